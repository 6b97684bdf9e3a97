package interop.clients;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;

/**
 * The client matrix's kafka-clients row (built against 3.9.x and 4.x from the same source):
 * configured with {@code bootstrap.servers} = the proxy and nothing else, it runs
 *
 * <ol>
 *   <li>AdminClient {@code describeCluster} (the nodes it names) and {@code createTopics} of two
 *       topics (3 partitions, replication factor 3), then {@code describeTopics} until every
 *       partition has a leader;
 *   <li>an idempotent producer ({@code enable.idempotence=true}, acks=all): {@code count}
 *       records, record i = key {@code k-i}, value {@code <topic>-i}, partition {@code i % 3};
 *       acknowledged offsets must be 0, 1, 2... per partition;
 *   <li>a consumer group reading them back, each checked (key, value, partition, order,
 *       consecutive offsets), commitSync, and the committed offsets read back through the
 *       AdminClient;
 *   <li>a transactional producer: a committed transaction, an aborted one (keys
 *       {@code aborted-j}), a second committed one; and a {@code read_committed} consumer
 *       group that must see exactly the committed records, in order, and none aborted.
 * </ol>
 *
 * <p>Arguments key=value: bootstrap, topic (the idempotent topic; the transactional one is
 * {@code <topic>-txn}), count, timeoutSecs. Prints one line {@code RESULT {json}}.
 */
public final class MatrixClient extends ClientProgram {
  private static final int PARTITIONS = 3;

  private long timeoutSecs;

  private MatrixClient(Map<String, String> args) {
    super(args);
  }

  public static void main(String[] argv) {
    ClientProgram.main(argv, MatrixClient::new);
  }

  @Override
  int run() throws Exception {
    result.put("client_version", KafkaVersion.get());
    String topic = arg("topic", null);
    String txnTopic = topic + "-txn";
    int count = Integer.parseInt(arg("count", "300"));
    timeoutSecs = Long.parseLong(arg("timeoutSecs", "90"));
    try (Admin admin = Admin.create(common("interop-matrix-admin"))) {
      step = "describeCluster";
      Map<String, String> byId = new TreeMap<>();
      for (Node n : admin.describeCluster().nodes().get(timeoutSecs, TimeUnit.SECONDS)) {
        byId.put(Integer.toString(n.id()), n.host() + ":" + n.port());
      }
      result.put("described_nodes", byId);

      step = "createTopics";
      admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 3),
              new NewTopic(txnTopic, PARTITIONS, (short) 3)))
          .all().get(timeoutSecs, TimeUnit.SECONDS);
      result.put("created_topics", List.of(topic, txnTopic));
      waitForLeaders(admin, List.of(topic, txnTopic));

      step = "idempotent producer";
      idempotent(topic, count);
      step = "consumer group";
      Map<String, Object> end = consume(topic, topic + "-group", "read_uncommitted", count, true);
      result.put("end_offsets", end);
      result.put("committed_read_back", committed(admin, topic + "-group"));

      step = "transactional producer";
      int committedCount = transactional(txnTopic, count);
      step = "read_committed consumer";
      Map<String, Object> txnEnd =
          consume(txnTopic, txnTopic + "-group", "read_committed", committedCount, false);
      result.put("txn_end_offsets", txnEnd);
      result.put("txn_committed_read_back", committed(admin, txnTopic + "-group"));
    }
    if (errorCount() == 0) {
      step = "done";
    }
    return 0;
  }

  private void waitForLeaders(Admin admin, List<String> topics) throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutSecs);
    while (true) {
      boolean all = true;
      Map<String, TopicDescription> d;
      try {
        d = admin.describeTopics(topics).allTopicNames().get(timeoutSecs, TimeUnit.SECONDS);
      } catch (java.util.concurrent.ExecutionException e) {
        d = Map.of(); // not yet known to every broker: ask again
      }
      for (String t : topics) {
        TopicDescription td = d.get(t);
        all &= td != null && td.partitions().size() == PARTITIONS;
        if (td != null) {
          for (TopicPartitionInfo p : td.partitions()) {
            all &= p.leader() != null && p.replicas().size() == 3;
          }
        }
      }
      if (all) {
        return;
      }
      if (System.nanoTime() > deadline) {
        throw new IllegalStateException("topics " + topics + " have no leaders after " + timeoutSecs + " s");
      }
      Thread.sleep(200);
    }
  }

  private Properties producerProps(String clientId) {
    Properties p = stringProducer(clientId);
    p.put("enable.idempotence", "true");
    return p;
  }

  private void idempotent(String topic, int count) throws Exception {
    Map<Integer, List<Long>> offsets = new TreeMap<>();
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps("interop-matrix-idempotent"))) {
      List<java.util.concurrent.Future<RecordMetadata>> fs = new ArrayList<>();
      for (int i = 0; i < count; i++) {
        fs.add(producer.send(new ProducerRecord<>(topic, i % PARTITIONS, "k-" + i, topic + "-" + i)));
      }
      producer.flush();
      for (java.util.concurrent.Future<RecordMetadata> f : fs) {
        RecordMetadata md = f.get(timeoutSecs, TimeUnit.SECONDS);
        offsets.computeIfAbsent(md.partition(), k -> new ArrayList<>()).add(md.offset());
      }
    }
    result.put("produced", count);
    result.put("acked", offsets.values().stream().mapToInt(List::size).sum());
    for (Map.Entry<Integer, List<Long>> e : offsets.entrySet()) {
      for (int j = 0; j < e.getValue().size(); j++) {
        if (e.getValue().get(j) != j) {
          error("idempotent producer: partition " + e.getKey() + " record #" + j
              + " acknowledged at offset " + e.getValue().get(j));
          break;
        }
      }
    }
  }

  /** Commits {@code [0, half)} and {@code [half, count)} as two transactions with an aborted
   * one between them; returns how many records were committed. */
  private int transactional(String topic, int count) throws Exception {
    Properties p = producerProps("interop-matrix-transactional");
    p.put("transactional.id", "interop-matrix-" + topic);
    int half = count / 2;
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
      producer.initTransactions();
      producer.beginTransaction();
      for (int i = 0; i < half; i++) {
        producer.send(new ProducerRecord<>(topic, i % PARTITIONS, "k-" + i, topic + "-" + i));
      }
      producer.commitTransaction();
      producer.beginTransaction();
      for (int j = 0; j < 30; j++) {
        producer.send(new ProducerRecord<>(topic, j % PARTITIONS, "aborted-" + j, "aborted-" + j));
      }
      producer.flush();
      producer.abortTransaction();
      producer.beginTransaction();
      for (int i = half; i < count; i++) {
        producer.send(new ProducerRecord<>(topic, i % PARTITIONS, "k-" + i, topic + "-" + i));
      }
      producer.commitTransaction();
    }
    result.put("txn_committed", count);
    result.put("txn_aborted", 30);
    return count;
  }

  /** Reads {@code count} records back in a group, checks each, commits; returns the end
   * offsets (for read_committed: the last stable offsets). */
  private Map<String, Object> consume(String topic, String group, String isolation, int count,
      boolean consecutiveOffsets) {
    Properties p = stringConsumer("interop-matrix-" + isolation, group);
    p.put("isolation.level", isolation);
    long[] next = new long[PARTITIONS];
    long[] last = new long[PARTITIONS];
    for (int q = 0; q < PARTITIONS; q++) {
      next[q] = q;
      last[q] = -1;
    }
    int consumed = 0;
    int bad = 0;
    String prefix = isolation.equals("read_committed") ? "txn_" : "";
    Map<String, Object> end = new TreeMap<>();
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
      c.subscribe(List.of(topic));
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutSecs);
      while (consumed < count && System.nanoTime() < deadline) {
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
          int q = r.partition();
          String problem = null;
          long i = -1;
          if (!r.key().startsWith("k-")) {
            problem = "unexpected record key=" + r.key() + " (an aborted record reached a "
                + isolation + " consumer?)";
          } else {
            i = Long.parseLong(r.key().substring(2));
            if (!(topic + "-" + i).equals(r.value()) || i % PARTITIONS != q) {
              problem = "record " + i + " value=" + r.value() + " partition=" + q;
            } else if (i != next[q]) {
              problem = "partition " + q + ": record " + i + ", want " + next[q];
            } else if (consecutiveOffsets && r.offset() != last[q] + 1) {
              problem = "partition " + q + ": record " + i + " at offset " + r.offset()
                  + " after " + last[q];
            }
          }
          if (problem != null) {
            if (bad++ < 10) {
              error(step + ": " + problem);
            }
            continue;
          }
          last[q] = r.offset();
          next[q] = i + PARTITIONS;
          consumed++;
        }
      }
      c.commitSync(Duration.ofSeconds(timeoutSecs));
      List<TopicPartition> tps = new ArrayList<>();
      for (int q = 0; q < PARTITIONS; q++) {
        tps.add(new TopicPartition(topic, q));
      }
      for (TopicPartition tp : tps) {
        end.put(Integer.toString(tp.partition()), c.position(tp));
      }
      Map<TopicPartition, Long> ends = c.endOffsets(tps);
      for (TopicPartition tp : tps) {
        if (ends.get(tp) != c.position(tp)) {
          error(step + ": partition " + tp.partition() + " position " + c.position(tp)
              + " but end offset " + ends.get(tp));
        }
      }
    }
    result.put(prefix + "consumed", consumed);
    result.put(prefix + "mismatched", bad);
    if (consumed != count) {
      error(step + ": got " + consumed + " of " + count + " records within " + timeoutSecs + " s");
    }
    return end;
  }

  private Map<String, Object> committed(Admin admin, String group) throws Exception {
    Map<String, Object> out = new TreeMap<>();
    Map<TopicPartition, OffsetAndMetadata> c = admin.listConsumerGroupOffsets(group)
        .partitionsToOffsetAndMetadata().get(timeoutSecs, TimeUnit.SECONDS);
    for (Map.Entry<TopicPartition, OffsetAndMetadata> e : c.entrySet()) {
      out.put(Integer.toString(e.getKey().partition()), e.getValue().offset());
    }
    return out;
  }
}
