package interop.clients;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.errors.TopicExistsException;

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
public final class RoundTrip extends ClientProgram {
  private RoundTrip(Map<String, String> args) {
    super(args);
  }

  public static void main(String[] argv) {
    ClientProgram.main(argv, RoundTrip::new);
  }

  @Override
  String defaultSecurity() {
    return "sasl_plaintext";
  }

  @Override
  int run() throws Exception {
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
    Properties p = stringProducer("interop-producer");
    p.put("linger.ms", "5");
    return p;
  }

  private Properties consumerProps() {
    return stringConsumer("interop-consumer", arg("group", "interop-" + arg("topic", null)));
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
          error("produce: record " + i + " acked at offset " + md.offset()
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
              error("consume: record " + i + " is key=" + r.key() + " value=" + r.value()
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
    result.put("elapsed_ms", millisSince(t0));
    if (got != count) {
      error("consume: got " + got + " of " + count + " records within " + timeoutSecs + " s");
    }
    step = "done";
    return errorCount() == 0 ? 0 : 1;
  }

  private int soak(String topic, long soakSecs, long timeoutSecs) throws Exception {
    long intervalMs = Long.parseLong(arg("intervalMs", "200"));
    String prefix = arg("prefix", topic);
    AtomicLong acked = new AtomicLong();

    step = "soak";
    KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps());
    consumer.subscribe(List.of(topic));
    // Each connection's own (re-)authentication count, sampled through the soak.
    ChannelWatch watch = new ChannelWatch();
    watch.start();
    watch.watch("consumer", consumer, consumer::metrics);
    long t0 = System.nanoTime();
    long endProduce = t0 + TimeUnit.SECONDS.toNanos(soakSecs);
    SoakProducer producer = new SoakProducer(producerProps(), endProduce, intervalMs,
        (kp, n) -> kp.send(new ProducerRecord<>(topic, "k-" + n, prefix + "-" + n), (md, ex) -> {
          if (ex != null) {
            error("produce: record " + n + ": " + describe(ex));
          } else {
            acked.incrementAndGet();
          }
        }));
    producer.watch = watch;
    AtomicLong sent = producer.sent;
    producer.start();

    long got = 0;
    long bad = 0;
    long lastReport = System.nanoTime();
    long hardDeadline = endProduce + TimeUnit.SECONDS.toNanos(timeoutSecs);
    Long firstOffset = null;
    while (System.nanoTime() < hardDeadline) {
      ConsumerRecords<String, String> recs;
      try {
        recs = consumer.poll(Duration.ofMillis(500));
      } catch (RuntimeException e) {
        // The client gave up (an authentication it could not recover from): what each of its
        // connections did until then is the evidence.
        watch.drop("consumer");
        result.put("connections", watch.summary());
        result.put("consumer_metrics", authMetrics(consumer.metrics()));
        throw e;
      }
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
            error("consume: record " + i + " is key=" + r.key() + " value=" + r.value()
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
      if (!producer.isAlive() && got >= sent.get()) {
        break;
      }
    }
    producer.join(TimeUnit.SECONDS.toMillis(timeoutSecs));
    watch.drop("consumer");
    result.put("connections", watch.summary());
    result.put("connection_watch_problems", watch.problems());
    result.put("consumer_metrics", authMetrics(consumer.metrics()));
    consumer.close(Duration.ofSeconds(10));
    result.put("producer_metrics", new TreeMap<>(producer.metrics));
    result.put("produced", sent.get());
    result.put("acked", acked.get());
    result.put("consumed", got);
    result.put("mismatched", bad);
    result.put("elapsed_ms", millisSince(t0));
    if (producer.failure.get() != null) {
      error("produce: " + producer.failure.get());
    }
    if (acked.get() != sent.get()) {
      error("produce: " + acked.get() + " of " + sent.get() + " records acknowledged");
    }
    if (got != sent.get()) {
      error("consume: got " + got + " of " + sent.get() + " records");
    }
    step = "done";
    return errorCount() == 0 ? 0 : 1;
  }
}
