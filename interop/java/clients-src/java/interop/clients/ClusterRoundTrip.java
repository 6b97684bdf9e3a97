package interop.clients;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The cluster scenarios' Java client: an AdminClient, an acks=all producer and a consumer group
 * against a multi-broker cluster, either directly (SASL_SSL + OAUTHBEARER through our sidecar's
 * token endpoint, the test CA as a PEM truststore) or through the proxy (PLAINTEXT, no SASL
 * settings at all).
 *
 * <p>Record i has key {@code k-i}, value {@code <prefix>-i} and goes to partition
 * {@code i % partitions}, so the order within each partition is known and checked one record at
 * a time. The program reports which broker addresses the client was ever given (AdminClient
 * {@code describeCluster} and the consumer's partition leaders and replicas), so the caller can
 * assert that no address but the expected ones reached it.
 *
 * <p>Modes: {@code mode=roundtrip} produces {@code count} records, waits for every
 * acknowledgement, consumes them all back in a consumer group, commits, and reads the committed
 * offsets back through the AdminClient. {@code mode=soak} runs a producer (one record every
 * {@code intervalMs} for {@code soakSecs}) and the consumer side by side; records redelivered
 * after a group rebalance are counted (not errors), a gap or a reordering is an error, and every
 * acknowledged record must arrive.
 *
 * <p>{@code mode=describe} only runs {@code describeCluster} (authentication checks).
 *
 * <p>Arguments are key=value: bootstrap, topic, partitions, count, prefix, group, mode,
 * soakSecs, intervalMs, timeoutSecs, security ({@code plaintext} | {@code sasl_ssl} |
 * {@code sasl_ssl_plain} | {@code sasl_plaintext}), tokenUrl (for sasl_ssl and
 * sasl_plaintext) and truststore (for sasl_ssl), username and truststore
 * (for sasl_ssl_plain, whose password is read from the environment variable
 * {@code INTEROP_PLAIN_PASSWORD}). Prints progress to stderr and one line {@code RESULT {json}} on
 * stdout; exit 0 only when every check passed and no client error was seen.
 */
public final class ClusterRoundTrip {
  private static final String HANDLER =
      "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler";

  private final Map<String, String> args;
  private final Map<String, Object> result = new TreeMap<>();
  private final List<String> errors = Collections.synchronizedList(new ArrayList<>());
  private volatile String step = "start";

  private ClusterRoundTrip(Map<String, String> args) {
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
    ClusterRoundTrip rt = new ClusterRoundTrip(a);
    int rc;
    try {
      rc = rt.run();
    } catch (Throwable t) {
      rt.errors.add(rt.step + ": " + RoundTrip.describe(t));
      t.printStackTrace();
      rc = 2;
    }
    boolean ok = rc == 0 && rt.errors.isEmpty();
    rt.result.put("ok", ok);
    rt.result.put("step", rt.step);
    synchronized (rt.errors) {
      rt.result.put("errors", new ArrayList<>(rt.errors.subList(0, Math.min(20, rt.errors.size()))));
      rt.result.put("error_count", rt.errors.size());
    }
    System.out.println("RESULT " + Json.write(rt.result));
    System.out.flush();
    System.exit(ok ? 0 : (rc == 0 ? 1 : rc));
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
    String security = arg("security", "plaintext");
    switch (security) {
      case "plaintext":
        // Through the proxy: nothing but bootstrap.servers (PLAINTEXT is the default).
        break;
      case "sasl_ssl":
        p.put("security.protocol", "SASL_SSL");
        p.put("ssl.truststore.type", "PEM");
        p.put("ssl.truststore.location", arg("truststore", null));
        p.put("sasl.mechanism", "OAUTHBEARER");
        p.put("sasl.oauthbearer.token.endpoint.url", arg("tokenUrl", null));
        p.put("sasl.login.callback.handler.class", HANDLER);
        p.put("sasl.jaas.config",
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required"
                + " clientId=\"unused\" clientSecret=\"unused\";");
        break;
      case "sasl_plaintext":
        // A client configured for SASL without TLS (what a user copying a direct-connection
        // configuration might point at the proxy): OAUTHBEARER through the sidecar.
        p.put("security.protocol", "SASL_PLAINTEXT");
        p.put("sasl.mechanism", "OAUTHBEARER");
        p.put("sasl.oauthbearer.token.endpoint.url", arg("tokenUrl", null));
        p.put("sasl.login.callback.handler.class", HANDLER);
        p.put("sasl.jaas.config",
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required"
                + " clientId=\"unused\" clientSecret=\"unused\";");
        break;
      case "sasl_ssl_plain":
        // Managed Kafka's PLAIN: username = the principal's email, password = a Google access
        // token (from the environment, so it is in no argument list or log).
        p.put("security.protocol", "SASL_SSL");
        p.put("ssl.truststore.type", "PEM");
        p.put("ssl.truststore.location", arg("truststore", null));
        p.put("sasl.mechanism", "PLAIN");
        String password = System.getenv("INTEROP_PLAIN_PASSWORD");
        if (password == null) {
          throw new IllegalArgumentException("security=sasl_ssl_plain needs INTEROP_PLAIN_PASSWORD");
        }
        p.put("sasl.jaas.config",
            "org.apache.kafka.common.security.plain.PlainLoginModule required username=\""
                + arg("username", null) + "\" password=\"" + password + "\";");
        break;
      default:
        throw new IllegalArgumentException("security=" + security
            + ": want plaintext (through the proxy), sasl_ssl, sasl_ssl_plain or sasl_plaintext");
    }
    return p;
  }

  private int run() throws Exception {
    result.put("client_version", KafkaVersion.get());
    System.err.println("kafka-clients " + KafkaVersion.get() + " cluster round trip, args=" + args);
    String mode = arg("mode", "roundtrip");
    String topic = arg("topic", "describe".equals(mode) ? "" : null);
    long timeoutSecs = Long.parseLong(arg("timeoutSecs", "120"));

    step = "describe-cluster";
    Properties ap = common("interop-admin");
    ap.put("request.timeout.ms", "30000");
    ap.put("default.api.timeout.ms", "60000");
    try (Admin admin = Admin.create(ap)) {
      DescribeClusterResult dc = admin.describeCluster();
      Collection<Node> nodes = dc.nodes().get(timeoutSecs, TimeUnit.SECONDS);
      Map<String, String> byId = new TreeMap<>();
      for (Node n : nodes) {
        byId.put(Integer.toString(n.id()), n.host() + ":" + n.port());
      }
      result.put("described_nodes", byId);
      Node controller = dc.controller().get(timeoutSecs, TimeUnit.SECONDS);
      result.put("described_controller",
          controller == null ? null : controller.id() + " " + controller.host() + ":" + controller.port());
      result.put("admin_metrics", RoundTrip.authMetrics(admin.metrics()));

      if ("roundtrip".equals(mode)) {
        roundTrip(topic, timeoutSecs);
        step = "read-committed-offsets";
        String group = group(topic);
        Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group)
            .partitionsToOffsetAndMetadata().get(timeoutSecs, TimeUnit.SECONDS);
        Map<String, Object> c = new TreeMap<>();
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : committed.entrySet()) {
          c.put(Integer.toString(e.getKey().partition()), e.getValue().offset());
        }
        result.put("committed_read_back", c);
        if (!c.equals(result.get("end_offsets"))) {
          errors.add("committed offsets read back " + c + " differ from the end offsets "
              + result.get("end_offsets"));
        }
      } else if ("describe".equals(mode)) {
        // describeCluster only (above): the authentication and address checks.
      } else if ("soak".equals(mode)) {
        soak(topic, timeoutSecs);
      } else {
        throw new IllegalArgumentException("mode=" + mode + ": want roundtrip, describe or soak");
      }
    }
    step = "done";
    return errors.isEmpty() ? 0 : 1;
  }

  private String group(String topic) {
    return arg("group", "interop-" + topic);
  }

  private int partitions() {
    return Integer.parseInt(arg("partitions", "3"));
  }

  private Properties producerProps() {
    Properties p = common("interop-producer");
    p.put("key.serializer", StringSerializer.class.getName());
    p.put("value.serializer", StringSerializer.class.getName());
    p.put("acks", "all");
    p.put("enable.idempotence", "true");
    p.put("linger.ms", "5");
    return p;
  }

  private Properties consumerProps(String topic) {
    Properties p = common("interop-consumer");
    p.put("key.deserializer", StringDeserializer.class.getName());
    p.put("value.deserializer", StringDeserializer.class.getName());
    p.put("group.id", group(topic));
    p.put("auto.offset.reset", "earliest");
    p.put("enable.auto.commit", "false");
    return p;
  }

  /** Per-partition checker: record indices must arrive in increasing order, without gaps. */
  private final class Checker {
    final int parts;
    final String prefix;
    /** Next index expected per partition (p, p+parts, p+2*parts, ...). */
    final long[] next;
    final Long[] firstOffset;
    final long[] lastOffset;
    long consumed;
    long redelivered;
    long bad;

    Checker(int parts, String prefix) {
      this.parts = parts;
      this.prefix = prefix;
      next = new long[parts];
      firstOffset = new Long[parts];
      lastOffset = new long[parts];
      for (int p = 0; p < parts; p++) {
        next[p] = p;
        lastOffset[p] = -1;
      }
    }

    void accept(ConsumerRecord<String, String> r) {
      int p = r.partition();
      String key = r.key();
      long i;
      try {
        i = Long.parseLong(key.substring(2));
      } catch (RuntimeException e) {
        fail("partition " + p + " offset " + r.offset() + ": unexpected key " + key);
        return;
      }
      if (!(prefix + "-" + i).equals(r.value()) || i % parts != p) {
        fail("record " + i + " is key=" + key + " value=" + r.value() + " partition=" + p
            + ", want value=" + prefix + "-" + i + " partition=" + (i % parts));
        return;
      }
      if (i < next[p]) {
        // Read again after a group rebalance before the last commit: the log is intact, the
        // consumer only re-reads it. Must still be at the offset it had before.
        redelivered++;
        return;
      }
      if (i != next[p]) {
        fail("partition " + p + ": record " + i + " at offset " + r.offset() + ", want record "
            + next[p] + " (records " + next[p] + ".." + (i - parts) + " missing or reordered)");
      }
      if (firstOffset[p] == null) {
        firstOffset[p] = r.offset();
      } else if (r.offset() != lastOffset[p] + 1) {
        fail("partition " + p + ": record " + i + " at offset " + r.offset()
            + ", the previous record was at " + lastOffset[p]);
      }
      lastOffset[p] = r.offset();
      next[p] = i + parts;
      consumed++;
    }

    private void fail(String what) {
      if (bad++ < 10) {
        errors.add("consume: " + what);
      }
    }

    /** Have records 0..n-1 all been consumed? */
    boolean hasAll(long n) {
      for (int p = 0; p < parts; p++) {
        if (p >= n) {
          continue;
        }
        long last = p + ((n - 1 - p) / parts) * parts; // the last index < n on partition p
        if (next[p] <= last) {
          return false;
        }
      }
      return true;
    }
  }

  private void roundTrip(String topic, long timeoutSecs) throws Exception {
    int count = Integer.parseInt(arg("count", "1000"));
    int parts = partitions();
    String prefix = arg("prefix", topic);
    long t0 = System.nanoTime();

    step = "produce";
    AtomicLong acked = new AtomicLong();
    Map<Integer, List<Long>> ackedOffsets = new ConcurrentHashMap<>();
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps())) {
      for (int i = 0; i < count; i++) {
        final int n = i;
        producer.send(new ProducerRecord<>(topic, i % parts, "k-" + i, prefix + "-" + i),
            (md, ex) -> {
              if (ex != null) {
                errors.add("produce: record " + n + ": " + RoundTrip.describe(ex));
              } else {
                acked.incrementAndGet();
                ackedOffsets.computeIfAbsent(md.partition(), k -> Collections.synchronizedList(
                    new ArrayList<>())).add(md.offset());
              }
            });
      }
      producer.flush();
      result.put("producer_metrics", RoundTrip.authMetrics(producer.metrics()));
    }
    result.put("produced", count);
    result.put("acked", acked.get());
    result.put("produce_ms", TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0));
    for (Map.Entry<Integer, List<Long>> e : ackedOffsets.entrySet()) {
      List<Long> offs = e.getValue();
      for (int j = 1; j < offs.size(); j++) {
        if (offs.get(j) != offs.get(j - 1) + 1) {
          errors.add("produce: partition " + e.getKey() + " acknowledged offset " + offs.get(j)
              + " after " + offs.get(j - 1));
          break;
        }
      }
    }
    System.err.println("produced " + count + " records to " + topic + ", " + acked.get() + " acked");

    step = "consume";
    Checker check = new Checker(parts, prefix);
    long t1 = System.nanoTime();
    try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps(topic))) {
      consumer.subscribe(List.of(topic));
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutSecs);
      while (check.consumed < count && System.nanoTime() < deadline) {
        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
          check.accept(r);
        }
      }
      consumer.commitSync(Duration.ofSeconds(timeoutSecs));
      recordLeaders(consumer, topic);
      List<TopicPartition> tps = new ArrayList<>();
      for (int p = 0; p < parts; p++) {
        tps.add(new TopicPartition(topic, p));
      }
      Map<String, Object> end = new TreeMap<>();
      consumer.endOffsets(tps).forEach((tp, off) -> end.put(Integer.toString(tp.partition()), off));
      result.put("end_offsets", end);
      result.put("consumer_metrics", RoundTrip.authMetrics(consumer.metrics()));
    }
    result.put("consume_ms", TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t1));
    result.put("consumed", check.consumed);
    result.put("redelivered", check.redelivered);
    result.put("mismatched", check.bad);
    if (check.consumed != count) {
      errors.add("consume: got " + check.consumed + " of " + count + " records within "
          + timeoutSecs + " s");
    }
    if (check.redelivered != 0) {
      errors.add("consume: " + check.redelivered + " records delivered twice in a plain round trip");
    }
  }

  /** The broker addresses the consumer's metadata gave it, as partition leaders and replicas. */
  private void recordLeaders(KafkaConsumer<String, String> consumer, String topic) {
    Map<String, String> seen = new TreeMap<>();
    Map<String, Object> leaders = new TreeMap<>();
    for (PartitionInfo pi : consumer.partitionsFor(topic)) {
      if (pi.leader() != null) {
        leaders.put(Integer.toString(pi.partition()), pi.leader().id());
        seen.put(Integer.toString(pi.leader().id()), pi.leader().host() + ":" + pi.leader().port());
      }
      for (Node n : pi.replicas()) {
        seen.put(Integer.toString(n.id()), n.host() + ":" + n.port());
      }
    }
    result.put("metadata_nodes", seen);
    result.put("leaders", leaders);
  }

  private void soak(String topic, long timeoutSecs) throws Exception {
    long soakSecs = Long.parseLong(arg("soakSecs", "60"));
    long intervalMs = Long.parseLong(arg("intervalMs", "200"));
    int parts = partitions();
    String prefix = arg("prefix", topic);
    AtomicLong sent = new AtomicLong();
    AtomicLong acked = new AtomicLong();
    AtomicLong failed = new AtomicLong();
    AtomicReference<String> prodErr = new AtomicReference<>();
    // The highest acknowledged index per partition: the consumer must get at least that far.
    long[] maxAcked = new long[parts];
    java.util.Arrays.fill(maxAcked, -1);
    Map<String, Object> producerMetrics = new TreeMap<>();

    step = "soak";
    KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps(topic));
    consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
      @Override
      public void onPartitionsRevoked(Collection<TopicPartition> revoked) {
        // Commit what was read so a rebalance re-delivers as little as possible.
        try {
          consumer.commitSync(Duration.ofSeconds(10));
        } catch (RuntimeException e) {
          System.err.println("commit on revoke failed (records will be re-read): " + e);
        }
      }

      @Override
      public void onPartitionsAssigned(Collection<TopicPartition> assigned) {}
    });
    long t0 = System.nanoTime();
    long endProduce = t0 + TimeUnit.SECONDS.toNanos(soakSecs);
    Thread producerThread = new Thread(() -> {
      try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps())) {
        long i = 0;
        while (System.nanoTime() < endProduce) {
          final long n = i++;
          final int p = (int) (n % parts);
          producer.send(new ProducerRecord<>(topic, p, "k-" + n, prefix + "-" + n), (md, ex) -> {
            if (ex != null) {
              failed.incrementAndGet();
              errors.add("produce: record " + n + ": " + RoundTrip.describe(ex));
            } else {
              acked.incrementAndGet();
              synchronized (maxAcked) {
                maxAcked[p] = Math.max(maxAcked[p], n);
              }
            }
          });
          sent.set(i);
          Thread.sleep(intervalMs);
        }
        producer.flush();
        producerMetrics.putAll(RoundTrip.authMetrics(producer.metrics()));
      } catch (Throwable t) {
        prodErr.set(RoundTrip.describe(t));
      }
    }, "soak-producer");
    producerThread.start();

    Checker check = new Checker(parts, prefix);
    long lastReport = System.nanoTime();
    long hardDeadline = endProduce + TimeUnit.SECONDS.toNanos(timeoutSecs);
    while (System.nanoTime() < hardDeadline) {
      try {
        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
          check.accept(r);
        }
      } catch (RuntimeException e) {
        errors.add("consume: poll failed: " + RoundTrip.describe(e));
      }
      if (System.nanoTime() - lastReport > TimeUnit.SECONDS.toNanos(15)) {
        lastReport = System.nanoTime();
        System.err.printf("soak t=%ds sent=%d acked=%d failed=%d consumed=%d redelivered=%d%n",
            TimeUnit.NANOSECONDS.toSeconds(lastReport - t0), sent.get(), acked.get(),
            failed.get(), check.consumed, check.redelivered);
      }
      if (!producerThread.isAlive() && check.hasAll(sent.get())) {
        break;
      }
    }
    producerThread.join(TimeUnit.SECONDS.toMillis(timeoutSecs));
    try {
      consumer.commitSync(Duration.ofSeconds(30));
    } catch (RuntimeException e) {
      errors.add("consume: final commit failed: " + RoundTrip.describe(e));
    }
    recordLeaders(consumer, topic);
    result.put("consumer_metrics", RoundTrip.authMetrics(consumer.metrics()));
    consumer.close(Duration.ofSeconds(10));
    result.put("producer_metrics", producerMetrics);
    result.put("produced", sent.get());
    result.put("acked", acked.get());
    result.put("send_failed", failed.get());
    result.put("consumed", check.consumed);
    result.put("redelivered", check.redelivered);
    result.put("mismatched", check.bad);
    result.put("elapsed_ms", TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0));
    if (prodErr.get() != null) {
      errors.add("produce: " + prodErr.get());
    }
    long lost = 0;
    synchronized (maxAcked) {
      for (int p = 0; p < parts; p++) {
        if (maxAcked[p] >= 0 && check.next[p] <= maxAcked[p]) {
          lost++;
          errors.add("consume: partition " + p + " stopped before record " + check.next[p]
              + " but the producer had acknowledged up to record " + maxAcked[p]);
        }
      }
    }
    result.put("partitions_short_of_acked", lost);
    if (acked.get() + failed.get() != sent.get()) {
      errors.add("produce: " + acked.get() + " acknowledged + " + failed.get() + " failed of "
          + sent.get() + " sent (some never completed)");
    }
  }
}
