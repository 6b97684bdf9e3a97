package interop.clients;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
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
public final class ClusterRoundTrip extends ClientProgram {
  private ClusterRoundTrip(Map<String, String> args) {
    super(args);
  }

  public static void main(String[] argv) {
    ClientProgram.main(argv, ClusterRoundTrip::new);
  }

  @Override
  int run() throws Exception {
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
      result.put("admin_metrics", authMetrics(admin.metrics()));

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
          error("committed offsets read back " + c + " differ from the end offsets "
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
    return errorCount() == 0 ? 0 : 1;
  }

  private String group(String topic) {
    return arg("group", "interop-" + topic);
  }

  private int partitions() {
    return Integer.parseInt(arg("partitions", "3"));
  }

  private Properties producerProps() {
    Properties p = stringProducer("interop-producer");
    p.put("enable.idempotence", "true");
    p.put("linger.ms", "5");
    return p;
  }

  private Properties consumerProps(String topic) {
    return stringConsumer("interop-consumer", group(topic));
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
        error("consume: " + what);
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
                error("produce: record " + n + ": " + describe(ex));
              } else {
                acked.incrementAndGet();
                ackedOffsets.computeIfAbsent(md.partition(), k -> Collections.synchronizedList(
                    new ArrayList<>())).add(md.offset());
              }
            });
      }
      producer.flush();
      result.put("producer_metrics", authMetrics(producer.metrics()));
    }
    result.put("produced", count);
    result.put("acked", acked.get());
    result.put("produce_ms", millisSince(t0));
    for (Map.Entry<Integer, List<Long>> e : ackedOffsets.entrySet()) {
      List<Long> offs = e.getValue();
      for (int j = 1; j < offs.size(); j++) {
        if (offs.get(j) != offs.get(j - 1) + 1) {
          error("produce: partition " + e.getKey() + " acknowledged offset " + offs.get(j)
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
      result.put("consumer_metrics", authMetrics(consumer.metrics()));
    }
    result.put("consume_ms", millisSince(t1));
    result.put("consumed", check.consumed);
    result.put("redelivered", check.redelivered);
    result.put("mismatched", check.bad);
    if (check.consumed != count) {
      error("consume: got " + check.consumed + " of " + count + " records within "
          + timeoutSecs + " s");
    }
    if (check.redelivered != 0) {
      error("consume: " + check.redelivered + " records delivered twice in a plain round trip");
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
    AtomicLong acked = new AtomicLong();
    AtomicLong failed = new AtomicLong();
    // The highest acknowledged index per partition: the consumer must get at least that far.
    long[] maxAcked = new long[parts];
    java.util.Arrays.fill(maxAcked, -1);

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
    // Each connection's own (re-)authentication count, sampled through the soak.
    ChannelWatch watch = new ChannelWatch();
    watch.start();
    watch.watch("consumer", consumer, consumer::metrics);
    long t0 = System.nanoTime();
    long endProduce = t0 + TimeUnit.SECONDS.toNanos(soakSecs);
    SoakProducer producer = new SoakProducer(producerProps(), endProduce, intervalMs,
        (kp, n) -> {
          final int p = (int) (n % parts);
          kp.send(new ProducerRecord<>(topic, p, "k-" + n, prefix + "-" + n), (md, ex) -> {
            if (ex != null) {
              failed.incrementAndGet();
              error("produce: record " + n + ": " + describe(ex));
            } else {
              acked.incrementAndGet();
              synchronized (maxAcked) {
                maxAcked[p] = Math.max(maxAcked[p], n);
              }
            }
          });
        });
    producer.watch = watch;
    AtomicLong sent = producer.sent;
    producer.start();

    Checker check = new Checker(parts, prefix);
    long lastReport = System.nanoTime();
    long hardDeadline = endProduce + TimeUnit.SECONDS.toNanos(timeoutSecs);
    while (System.nanoTime() < hardDeadline) {
      try {
        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
          check.accept(r);
        }
      } catch (RuntimeException e) {
        error("consume: poll failed: " + describe(e));
      }
      if (System.nanoTime() - lastReport > TimeUnit.SECONDS.toNanos(15)) {
        lastReport = System.nanoTime();
        System.err.printf("soak t=%ds sent=%d acked=%d failed=%d consumed=%d redelivered=%d%n",
            TimeUnit.NANOSECONDS.toSeconds(lastReport - t0), sent.get(), acked.get(),
            failed.get(), check.consumed, check.redelivered);
      }
      if (!producer.isAlive() && check.hasAll(sent.get())) {
        break;
      }
    }
    producer.join(TimeUnit.SECONDS.toMillis(timeoutSecs));
    try {
      consumer.commitSync(Duration.ofSeconds(30));
    } catch (RuntimeException e) {
      error("consume: final commit failed: " + describe(e));
    }
    recordLeaders(consumer, topic);
    watch.drop("consumer");
    result.put("connections", watch.summary());
    result.put("connection_watch_problems", watch.problems());
    result.put("consumer_metrics", authMetrics(consumer.metrics()));
    consumer.close(Duration.ofSeconds(10));
    result.put("producer_metrics", new TreeMap<>(producer.metrics));
    result.put("produced", sent.get());
    result.put("acked", acked.get());
    result.put("send_failed", failed.get());
    result.put("consumed", check.consumed);
    result.put("redelivered", check.redelivered);
    result.put("mismatched", check.bad);
    result.put("elapsed_ms", millisSince(t0));
    if (producer.failure.get() != null) {
      error("produce: " + producer.failure.get());
    }
    long lost = 0;
    synchronized (maxAcked) {
      for (int p = 0; p < parts; p++) {
        if (maxAcked[p] >= 0 && check.next[p] <= maxAcked[p]) {
          lost++;
          error("consume: partition " + p + " stopped before record " + check.next[p]
              + " but the producer had acknowledged up to record " + maxAcked[p]);
        }
      }
    }
    result.put("partitions_short_of_acked", lost);
    if (acked.get() + failed.get() != sent.get()) {
      error("produce: " + acked.get() + " acknowledged + " + failed.get() + " failed of "
          + sent.get() + " sent (some never completed)");
    }
  }
}
