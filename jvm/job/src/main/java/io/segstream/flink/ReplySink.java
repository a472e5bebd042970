package io.segstream.flink;

import java.io.IOException;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichFilterFunction;
import org.apache.flink.metrics.Counter;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.types.Row;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.producer.ProducerRecord;

/**
 * The answers for the serving fronts: {@link Outputs#REPLIES} rows (reply topic, event_id,
 * evaluation JSON) written to the topic each row names, key = event_id, value = the evaluation.
 *
 * <p>Always at-least-once, never transactional, even when {@code evaluations} is exactly-once: a
 * waiting HTTP request must not wait for a checkpoint. An evaluation is deterministic (the same
 * state and event give the same JSON), so an answer written by an attempt that a restore later
 * replays is the answer the replay gives again; a front may see it twice and keeps the first.
 *
 * <p>Only existing topics starting with the configured prefix are written ({@link Topics}): a record
 * header cannot make the job write to {@code evaluations} or any other topic, and an answer for a
 * front whose topic is gone (an old event replayed) is dropped, not sent to a missing topic (the
 * producer would block on its metadata, then fail the job). One more topic may be named: the
 * erasures topic, whose acknowledgements ride this sink ({@link Pipeline#build}).
 */
public final class ReplySink {
  private ReplySink() {}

  /**
   * @param bootstrapServers the Kafka cluster of the reply topics
   * @param producerProperties extra producer properties, in {@link Properties#load} text form (may be empty)
   */
  public static KafkaSink<Row> build(String bootstrapServers, String producerProperties) {
    Properties props = properties(producerProperties);
    // Answers are waited for: send each one at once rather than lingering for a batch.
    props.putIfAbsent("linger.ms", "0");
    return KafkaSink.<Row>builder()
        .setBootstrapServers(bootstrapServers)
        .setKafkaProducerConfig(props)
        .setDeliveryGuarantee(DeliveryGuarantee.AT_LEAST_ONCE)
        .setRecordSerializer(new Serializer())
        .build();
  }

  static Properties properties(String text) {
    Properties props = new Properties();
    try {
      props.load(new StringReader(text == null ? "" : text));
    } catch (IOException e) {
      throw new IllegalArgumentException(e);
    }
    return props;
  }

  /** (topic, key, value) rows to a record of that topic; Kafka's default partitioner hashes the key. */
  static final class Serializer implements KafkaRecordSerializationSchema<Row> {
    private static final long serialVersionUID = 1L;

    @Override
    public ProducerRecord<byte[], byte[]> serialize(Row row, KafkaSinkContext context, Long timestamp) {
      return new ProducerRecord<>((String) row.getField(0), null, timestamp,
          ((String) row.getField(1)).getBytes(StandardCharsets.UTF_8),
          ((String) row.getField(2)).getBytes(StandardCharsets.UTF_8));
    }
  }

  /**
   * Keeps the rows whose topic is a legal Kafka topic name starting with the prefix and exists. The
   * existing reply topics are listed with an admin client: again when a row names one not seen
   * (at most once a second) and every 30 s (topics deleted since). Dropped rows count in the metric
   * {@code repliesDropped}.
   */
  static final class Topics extends RichFilterFunction<Row> {
    private static final long serialVersionUID = 1L;
    static final long RETRY_MS = 1_000;
    static final long REFRESH_MS = 30_000;
    private final String prefix;
    /** One more topic taken whatever its name (the erasures topic), or null. */
    private final String alsoTopic;
    private final String bootstrapServers;
    private final String clientProperties;
    private transient Admin admin;
    private transient Counter dropped;
    private transient Set<String> known;
    private transient long listedAt;

    Topics(String prefix, String bootstrapServers, String clientProperties) {
      this(prefix, null, bootstrapServers, clientProperties);
    }

    Topics(String prefix, String alsoTopic, String bootstrapServers, String clientProperties) {
      if (prefix == null || prefix.isEmpty()) throw new IllegalArgumentException("empty reply topic prefix");
      this.prefix = prefix;
      this.alsoTopic = alsoTopic;
      this.bootstrapServers = bootstrapServers;
      this.clientProperties = clientProperties;
    }

    @Override
    public void open(OpenContext openContext) {
      Properties props = properties(clientProperties);
      props.put("bootstrap.servers", bootstrapServers);
      admin = Admin.create(props);
      dropped = getRuntimeContext().getMetricGroup().counter("repliesDropped");
    }

    @Override
    public void close() {
      if (admin != null) admin.close();
    }

    @Override
    public boolean filter(Row row) {
      boolean keep = row.getField(0) instanceof String topic && (allowed(prefix, topic) || topic.equals(alsoTopic))
          && exists(topic, System.currentTimeMillis(), this::list);
      if (!keep && dropped != null) dropped.inc();
      return keep;
    }

    private Set<String> list() {
      try {
        Set<String> names = new HashSet<>();
        for (String name : admin.listTopics().names().get(10, TimeUnit.SECONDS)) {
          if (name.startsWith(prefix) || name.equals(alsoTopic)) names.add(name);
        }
        return names;
      } catch (Exception e) {  // Kafka unreachable: nothing can be sent anyway; try again later
        return null;
      }
    }

    /** Whether `topic` exists, by the cached list, listed again by `lister` when due. */
    boolean exists(String topic, long now, Supplier<Set<String>> lister) {
      boolean due = known == null || now - listedAt >= REFRESH_MS || (!known.contains(topic) && now - listedAt >= RETRY_MS);
      if (due) {
        Set<String> listed = lister.get();
        listedAt = now;
        if (listed != null) known = listed;
      }
      return known != null && known.contains(topic);
    }

    static boolean allowed(String prefix, String topic) {
      if (!topic.startsWith(prefix) || topic.length() > 249) return false;
      for (int i = 0; i < topic.length(); i++) {
        char c = topic.charAt(i);
        if (!(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_'
            || c == '-')) return false;
      }
      return true;
    }
  }
}
