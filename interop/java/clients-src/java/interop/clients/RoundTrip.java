package interop.clients;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Produces N records through a SASL/OAUTHBEARER listener and consumes them back, checking every
 * record (key, value, offset) one by one. The client gets its token from our sidecar through the
 * stock {@code OAuthBearerLoginCallbackHandler} and {@code sasl.oauthbearer.token.endpoint.url},
 * exactly as users configure it.
 *
 * <p>With {@code soakSecs>0} a producer and a consumer run side by side for that long (one
 * record every {@code intervalMs}), which is how the suite proves token refresh and broker
 * re-authentication under a live client.
 *
 * <p>Arguments are key=value: bootstrap, tokenUrl, topic, count, prefix, group, soakSecs,
 * intervalMs, timeoutSecs. Prints progress to stderr and one line {@code RESULT {json}} on
 * stdout. Exit 0 only when every record came back intact and no client error was seen.
 */
public final class RoundTrip {
  private static final String HANDLER =
      "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler";

  private final Map<String, String> args;
  private final Map<String, Object> result = new TreeMap<>();
  private final List<String> errors = new ArrayList<>();
  private String step = "start";

  private RoundTrip(Map<String, String> args) {
    this.args = args;
  }

  public static void main(String[] argv) {
    Map<String, String> a = new HashMap<>();
    for (String s : argv) {
      int eq = s.indexOf('=');
      if (eq < 0) {
        System.err.println("argument without '=': " + s);
        System.exit(64);
      }
      a.put(s.substring(0, eq), s.substring(eq + 1));
    }
    RoundTrip rt = new RoundTrip(a);
    int rc;
    try {
      rc = rt.run();
    } catch (Throwable t) {
      rt.errors.add(rt.step + ": " + describe(t));
      t.printStackTrace();
      rc = 2;
    }
    rt.result.put("ok", rc == 0 && rt.errors.isEmpty());
    rt.result.put("step", rt.step);
    rt.result.put("errors", rt.errors);
    System.out.println("RESULT " + Json.write(rt.result));
    System.out.flush();
    System.exit(rc == 0 && rt.errors.isEmpty() ? 0 : (rc == 0 ? 1 : rc));
  }

  static String describe(Throwable t) {
    StringBuilder sb = new StringBuilder(t.toString());
    for (Throwable c = t.getCause(); c != null && c != c.getCause(); c = c.getCause()) {
      sb.append(" <- caused by ").append(c);
    }
    return sb.toString();
  }

  private String arg(String k, String dflt) {
    String v = args.get(k);
    if (v == null && dflt == null) {
      throw new IllegalArgumentException("missing argument " + k + "=...");
    }
    return v == null ? dflt : v;
  }

  private Properties common(String clientId) {
    Properties p = new Properties();
    p.put("bootstrap.servers", arg("bootstrap", null));
    p.put("client.id", clientId);
    p.put("security.protocol", "SASL_PLAINTEXT");
    p.put("sasl.mechanism", "OAUTHBEARER");
    p.put("sasl.oauthbearer.token.endpoint.url", arg("tokenUrl", null));
    p.put("sasl.login.callback.handler.class", HANDLER);
    p.put("sasl.jaas.config",
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required"
            + " clientId=\"unused\" clientSecret=\"unused\";");
    return p;
  }

  private int run() throws Exception {
    result.put("client_version", KafkaVersion.get());
    System.err.println("kafka-clients " + KafkaVersion.get() + " round trip, args=" + args);
    String topic = arg("topic", null);
    long soakSecs = Long.parseLong(arg("soakSecs", "0"));
    long timeoutSecs = Long.parseLong(arg("timeoutSecs", "120"));

    step = "create-topic";
    Properties ap = common("interop-admin");
    ap.put("request.timeout.ms", "30000");
    ap.put("default.api.timeout.ms", "60000");
    try (Admin admin = Admin.create(ap)) {
      try {
        admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all()
            .get(timeoutSecs, TimeUnit.SECONDS);
      } catch (ExecutionException e) {
        if (!(e.getCause() instanceof TopicExistsException)) {
          throw e;
        }
      }
      result.put("admin_metrics", authMetrics(admin.metrics()));
    }
    return soakSecs > 0 ? soak(topic, soakSecs, timeoutSecs) : roundTrip(topic, timeoutSecs);
  }

  private Properties producerProps() {
    Properties p = common("interop-producer");
    p.put("key.serializer", StringSerializer.class.getName());
    p.put("value.serializer", StringSerializer.class.getName());
    p.put("acks", "all");
    p.put("linger.ms", "5");
    return p;
  }

  private Properties consumerProps() {
    Properties p = common("interop-consumer");
    p.put("key.deserializer", StringDeserializer.class.getName());
    p.put("value.deserializer", StringDeserializer.class.getName());
    p.put("group.id", arg("group", "interop-" + arg("topic", null)));
    p.put("auto.offset.reset", "earliest");
    p.put("enable.auto.commit", "false");
    return p;
  }

  private int roundTrip(String topic, long timeoutSecs) throws Exception {
    int count = Integer.parseInt(arg("count", "1000"));
    String prefix = arg("prefix", topic);
    long t0 = System.nanoTime();

    step = "produce";
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps())) {
      List<Future<RecordMetadata>> acks = new ArrayList<>(count);
      for (int i = 0; i < count; i++) {
        acks.add(producer.send(new ProducerRecord<>(topic, "k-" + i, prefix + "-" + i)));
      }
      producer.flush();
      long firstOffset = -1;
      for (int i = 0; i < count; i++) {
        RecordMetadata md = acks.get(i).get(timeoutSecs, TimeUnit.SECONDS);
        if (i == 0) {
          firstOffset = md.offset();
        } else if (md.offset() != firstOffset + i) {
          errors.add("produce: record " + i + " acked at offset " + md.offset()
              + ", want " + (firstOffset + i));
        }
      }
      result.put("produced", count);
      result.put("first_offset", firstOffset);
      result.put("producer_metrics", authMetrics(producer.metrics()));
    }
    System.err.println("produced " + count + " records to " + topic);

    step = "consume";
    int got = 0;
    int bad = 0;
    try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps())) {
      consumer.subscribe(List.of(topic));
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutSecs);
      long firstOffset = ((Number) result.get("first_offset")).longValue();
      while (got < count && System.nanoTime() < deadline) {
        ConsumerRecords<String, String> recs = consumer.poll(Duration.ofMillis(500));
        for (ConsumerRecord<String, String> r : recs) {
          if (r.offset() < firstOffset) {
            continue; // records of an earlier run of the same topic
          }
          int i = got++;
          String wantKey = "k-" + i;
          String wantValue = prefix + "-" + i;
          if (!wantKey.equals(r.key()) || !wantValue.equals(r.value())
              || r.offset() != firstOffset + i) {
            if (bad++ < 10) {
              errors.add("consume: record " + i + " is key=" + r.key() + " value=" + r.value()
                  + " offset=" + r.offset() + ", want key=" + wantKey + " value=" + wantValue
                  + " offset=" + (firstOffset + i));
            }
          }
        }
      }
      consumer.commitSync();
      result.put("consumer_metrics", authMetrics(consumer.metrics()));
    }
    result.put("consumed", got);
    result.put("mismatched", bad);
    result.put("elapsed_ms", TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0));
    if (got != count) {
      errors.add("consume: got " + got + " of " + count + " records within " + timeoutSecs + " s");
    }
    step = "done";
    return errors.isEmpty() ? 0 : 1;
  }

  private int soak(String topic, long soakSecs, long timeoutSecs) throws Exception {
    long intervalMs = Long.parseLong(arg("intervalMs", "200"));
    String prefix = arg("prefix", topic);
    AtomicLong sent = new AtomicLong();
    AtomicLong acked = new AtomicLong();
    AtomicReference<String> prodErr = new AtomicReference<>();
    List<String> sendErrors = java.util.Collections.synchronizedList(new ArrayList<>());
    Map<String, Object> producerMetrics = new TreeMap<>();

    step = "soak";
    KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps());
    consumer.subscribe(List.of(topic));
    long t0 = System.nanoTime();
    long endProduce = t0 + TimeUnit.SECONDS.toNanos(soakSecs);
    Thread producerThread = new Thread(() -> {
      try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps())) {
        long i = 0;
        while (System.nanoTime() < endProduce) {
          final long n = i++;
          producer.send(new ProducerRecord<>(topic, "k-" + n, prefix + "-" + n), (md, ex) -> {
            if (ex != null) {
              if (sendErrors.size() < 10) {
                sendErrors.add("produce: record " + n + ": " + describe(ex));
              }
            } else {
              acked.incrementAndGet();
            }
          });
          sent.set(i);
          Thread.sleep(intervalMs);
        }
        producer.flush();
        producerMetrics.putAll(authMetrics(producer.metrics()));
      } catch (Throwable t) {
        prodErr.set(describe(t));
      }
    }, "soak-producer");
    producerThread.start();

    long got = 0;
    long bad = 0;
    long lastReport = System.nanoTime();
    long hardDeadline = endProduce + TimeUnit.SECONDS.toNanos(timeoutSecs);
    Long firstOffset = null;
    while (System.nanoTime() < hardDeadline) {
      ConsumerRecords<String, String> recs = consumer.poll(Duration.ofMillis(500));
      for (ConsumerRecord<String, String> r : recs) {
        if (firstOffset == null) {
          firstOffset = r.offset();
        }
        long i = got++;
        String wantKey = "k-" + i;
        String wantValue = prefix + "-" + i;
        if (!wantKey.equals(r.key()) || !wantValue.equals(r.value())
            || r.offset() != firstOffset + i) {
          if (bad++ < 10) {
            errors.add("consume: record " + i + " is key=" + r.key() + " value=" + r.value()
                + " offset=" + r.offset() + ", want key=" + wantKey + " value=" + wantValue);
          }
        }
      }
      if (System.nanoTime() - lastReport > TimeUnit.SECONDS.toNanos(15)) {
        lastReport = System.nanoTime();
        System.err.printf("soak t=%ds sent=%d acked=%d consumed=%d consumer=%s%n",
            TimeUnit.NANOSECONDS.toSeconds(lastReport - t0), sent.get(), acked.get(), got,
            authMetrics(consumer.metrics()));
      }
      if (!producerThread.isAlive() && got >= sent.get()) {
        break;
      }
    }
    producerThread.join(TimeUnit.SECONDS.toMillis(timeoutSecs));
    result.put("consumer_metrics", authMetrics(consumer.metrics()));
    consumer.close(Duration.ofSeconds(10));
    result.put("producer_metrics", producerMetrics);
    result.put("produced", sent.get());
    result.put("acked", acked.get());
    result.put("consumed", got);
    result.put("mismatched", bad);
    result.put("elapsed_ms", TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0));
    if (prodErr.get() != null) {
      errors.add("produce: " + prodErr.get());
    }
    errors.addAll(sendErrors);
    if (acked.get() != sent.get()) {
      errors.add("produce: " + acked.get() + " of " + sent.get() + " records acknowledged");
    }
    if (got != sent.get()) {
      errors.add("consume: got " + got + " of " + sent.get() + " records");
    }
    step = "done";
    return errors.isEmpty() ? 0 : 1;
  }

  /**
   * SASL (re-)authentication counters of one client and its connection openings and closings
   * (a close during a soak is a reconnection the client retried silently), summed over its
   * metric groups.
   */
  static Map<String, Object> authMetrics(Map<MetricName, ? extends Metric> metrics) {
    Map<String, Object> out = new TreeMap<>();
    for (Map.Entry<MetricName, ? extends Metric> e : metrics.entrySet()) {
      String name = e.getKey().name();
      if (!name.endsWith("authentication-total") && !name.equals("connection-close-total")
          && !name.equals("connection-creation-total")) {
        continue;
      }
      if (!e.getKey().tags().keySet().stream().allMatch(t -> t.equals("client-id"))) {
        continue; // per-node duplicates
      }
      Object v = e.getValue().metricValue();
      if (v instanceof Number) {
        out.merge(name, ((Number) v).longValue(), (x, y) -> (Long) x + (Long) y);
      }
    }
    return out;
  }
}
