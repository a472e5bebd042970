import io.segstream.engine.Event;
import io.segstream.engine.Events;
import io.segstream.engine.Redaction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * The PII redaction's own cost in the JVM engine (docs/benchmarks.md section 12): the event
 * contract's parse alone, then parse + {@link Redaction#redact} under bench/throughput.py pii-cost's
 * policy, over 1,000 events shaped like the traffic generator's, 300 passes, five rounds (the first
 * ones warm the JIT). Run: java -cp .segstream/jvm/segstream-engine.jar bench/RedactionCost.java
 */
public class RedactionCost {
  public static void main(String[] a) throws Exception {
    Redaction r = Redaction.fromJson("{\"key_hex\":\"00112233\",\"default\":{\"values.device\":\"hash\",\"values.product_id\":\"hash\",\"values.country\":\"hash\",\"values.item\":\"drop\"},\"tenants\":{}}");
    List<byte[]> raws = new ArrayList<>();
    Random rnd = new Random(1);
    for (int i = 0; i < 1000; i++) {
      String v = switch (i % 4) {
        case 0 -> "{\"path\":\"/p/" + i + "\",\"duration_ms\":" + rnd.nextInt(60000) + ",\"device\":\"ios\"}";
        case 1 -> "{\"product_id\":\"p" + i + "\",\"price\":1200}";
        case 2 -> "{\"amount\":1200,\"item\":\"kettle\",\"currency\":\"JPY\"}";
        default -> "{\"member\":true,\"plan\":\"pro\",\"country\":\"JP\",\"age\":33}";
      };
      raws.add(("{\"event_id\":\"e1-" + i + "-0\",\"tenant\":\"default\",\"user_id\":\"u00" + i + "\",\"ts\":1790000000000,\"name\":\"page_view\",\"values\":" + v + "}").getBytes(StandardCharsets.UTF_8));
    }
    for (int round = 0; round < 5; round++) {
      long n = 0, t0 = System.nanoTime();
      for (int k = 0; k < 300; k++) for (byte[] raw : raws) { Event e = Events.parse(raw); n += e.values().size(); }
      long t1 = System.nanoTime();
      for (int k = 0; k < 300; k++) for (byte[] raw : raws) { Event e = Events.parse(raw); Redaction.Redacted x = r.redact(e); n += x.json().length; }
      long t2 = System.nanoTime();
      System.out.printf("parse %.2f µs/event, parse+redact %.2f µs/event (checksum %d)%n", (t1 - t0) / 300e6, (t2 - t1) / 300e6, n);
    }
  }
}
