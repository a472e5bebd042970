package io.segstream.flink;

import java.io.IOException;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import org.apache.flink.api.common.functions.FilterFunction;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.types.Row;
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
 * <p>Only topics starting with the configured prefix are written ({@link Topics}): a record header
 * cannot make the job write to {@code evaluations} or any other topic.
 */
public final class ReplySink {
  private ReplySink() {}

  /**
   * @param bootstrapServers the Kafka cluster of the reply topics
   * @param producerProperties extra producer properties, in {@link Properties#load} text form (may be empty)
   */
  public static KafkaSink<Row> build(String bootstrapServers, String producerProperties) {
    Properties props = new Properties();
    try {
      props.load(new StringReader(producerProperties == null ? "" : producerProperties));
    } catch (IOException e) {
      throw new IllegalArgumentException(e);
    }
    // Answers are waited for: send each one at once rather than lingering for a batch.
    props.putIfAbsent("linger.ms", "0");
    return KafkaSink.<Row>builder()
        .setBootstrapServers(bootstrapServers)
        .setKafkaProducerConfig(props)
        .setDeliveryGuarantee(DeliveryGuarantee.AT_LEAST_ONCE)
        .setRecordSerializer(new Serializer())
        .build();
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

  /** Keeps the rows whose topic is a legal Kafka topic name starting with the prefix. */
  static final class Topics implements FilterFunction<Row> {
    private static final long serialVersionUID = 1L;
    private final String prefix;

    Topics(String prefix) {
      if (prefix == null || prefix.isEmpty()) throw new IllegalArgumentException("empty reply topic prefix");
      this.prefix = prefix;
    }

    @Override
    public boolean filter(Row row) {
      return row.getField(0) instanceof String topic && allowed(prefix, topic);
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
