package interop.clients;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * The benchmark's one load generator (issue 15): the same kafka-clients program drives the
 * direct path, our proxy and kafka-proxy, so the paths differ only in what sits between the
 * client and the brokers.
 *
 * <p>Arguments are {@code key=value}: bootstrap, topic, mode ({@code produce} | {@code latency} |
 * {@code consume} | {@code fill}), security/truststore/tokenUrl/username as
 * {@link ClientProgram#common} takes them, recordSize (bytes), acks, warmupSecs, secs, maxBytes
 * (a produce run stops early after this much payload, so the brokers' disks stay bounded),
 * rate (records/s for {@code latency}), count (records for {@code fill}).
 *
 * <ul>
 *   <li>{@code produce}: as fast as the producer goes, batching on (linger.ms=5,
 *       batch.size=128 KiB, no compression: the bytes on the wire are the payload); counts
 *       acknowledged records in the measured window only (after the warm-up).
 *   <li>{@code latency}: one record every 1/rate s, linger.ms=0 so every record is its own
 *       Produce request; the latency of each is send() to its acknowledgement, in
 *       microseconds (System.nanoTime), reported as p50/p99/p99.9 of the measured window.
 *   <li>{@code consume}: reads every partition of a pre-filled topic from the start, again and
 *       again until the window ends (the page cache serves it; the path is what is measured).
 * </ul>
 *
 * Prints one line {@code RESULT {json}} on stdout; exit 0 only without a client error.
 */
public final class KafkaLoad extends ClientProgram {
  private KafkaLoad(Map<String, String> args) {
    super(args);
  }

  public static void main(String[] argv) {
    ClientProgram.main(argv, KafkaLoad::new);
  }

  /** A client error: counted, the first one kept (a failing path fails every record). */
  private void error(Throwable t) {
    error(describe(t));
  }

  @Override
  void failed(Throwable t) {
    error(t);
  }

  @Override
  void report(boolean ok) {
    result.put("ok", ok);
    result.put("error_count", errorCount());
    List<String> errors = errors();
    result.put("first_error", errors.isEmpty() ? null : errors.get(0));
  }

  @Override
  int run() throws Exception {
    String mode = arg("mode", null);
    result.put("mode", mode);
    result.put("client_version", KafkaVersion.get());
    switch (mode) {
      case "produce":
      case "fill":
        return produce(mode.equals("fill"));
      case "latency":
        return latency();
      case "consume":
        return consume();
      default:
        throw new IllegalArgumentException("mode=" + mode + ": want produce, fill, latency or consume");
    }
  }

  private KafkaProducer<byte[], byte[]> producer(String acks, int lingerMs) {
    Properties p = common("bench-producer");
    p.put("acks", acks);
    p.put("linger.ms", Integer.toString(lingerMs));
    p.put("batch.size", Integer.toString(128 * 1024));
    p.put("compression.type", "none");
    p.put("enable.idempotence", "false");
    p.put("max.in.flight.requests.per.connection", "5");
    // Small enough that what is still buffered when the window closes stays small.
    p.put("buffer.memory", Long.toString(8L << 20));
    return new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
  }

  private static byte[] payload(int size) {
    byte[] b = new byte[size];
    // Not all zeroes, so nothing on the way could shrink it.
    for (int i = 0; i < size; i++) {
      b[i] = (byte) ('a' + (i * 7919) % 26);
    }
    return b;
  }

  /** produce: throughput in the measured window; fill: exactly `count` records, then stop. */
  private int produce(boolean fill) throws Exception {
    String topic = arg("topic", null);
    int size = (int) num("recordSize", "1024");
    String acks = arg("acks", "1");
    long warmupNs = num("warmupSecs", "2") * 1_000_000_000L;
    long windowNs = num("secs", "10") * 1_000_000_000L;
    long maxBytes = num("maxBytes", Long.toString(Long.MAX_VALUE));
    long count = fill ? num("count", null) : Long.MAX_VALUE;
    byte[] value = payload(size);
    AtomicLong acked = new AtomicLong();
    AtomicLong ackedInWindow = new AtomicLong();
    // Acknowledgements count only inside [windowStart, windowEnd): the ones that arrive while
    // the producer drains its buffer after the window are not figures.
    AtomicLong windowEndMark = new AtomicLong(Long.MAX_VALUE);
    long t0;
    long windowStart;
    long windowEnd;
    long sent = 0;
    try (KafkaProducer<byte[], byte[]> p = producer(acks, 5)) {
      // The first metadata round trip (and the connections) happen before the clock starts.
      p.partitionsFor(topic);
      t0 = System.nanoTime();
      windowStart = fill ? t0 : t0 + warmupNs;
      long deadline = fill ? Long.MAX_VALUE : windowStart + windowNs;
      long maxRecords = fill ? count : Math.max(1, maxBytes / size);
      while (sent < count && System.nanoTime() < deadline
          && (fill || ackedInWindow.get() < maxRecords)) {
        p.send(new ProducerRecord<>(topic, null, value), (md, e) -> {
          if (e != null) {
            error(e);
            return;
          }
          acked.incrementAndGet();
          long now = System.nanoTime();
          if (now >= windowStart && now < windowEndMark.get()) {
            ackedInWindow.incrementAndGet();
          }
        });
        sent++;
      }
      windowEnd = System.nanoTime();
      windowEndMark.set(windowEnd);
      p.flush();
      if (fill) {
        windowEnd = System.nanoTime();
      }
    }
    double secs = (windowEnd - windowStart) / 1e9;
    long n = fill ? acked.get() : ackedInWindow.get();
    result.put("records", n);
    result.put("sent", sent);
    result.put("record_size", size);
    result.put("acks", acks);
    result.put("secs", secs);
    result.put("records_per_sec", n / secs);
    result.put("mb_per_sec", n * (double) size / secs / 1e6);
    result.put("bytes", n * (long) size);
    // Everything acknowledged, warm-up included: what the path moved while the process ran.
    result.put("total_bytes", acked.get() * (long) size);
    return 0;
  }

  private int latency() throws Exception {
    String topic = arg("topic", null);
    int size = (int) num("recordSize", "100");
    String acks = arg("acks", "1");
    long rate = num("rate", "1000");
    long warmupNs = num("warmupSecs", "2") * 1_000_000_000L;
    long windowNs = num("secs", "10") * 1_000_000_000L;
    byte[] value = payload(size);
    long intervalNs = 1_000_000_000L / rate;
    int total = (int) ((warmupNs + windowNs) / intervalNs);
    int warm = (int) (warmupNs / intervalNs);
    long[] micros = new long[total];
    Arrays.fill(micros, -1);
    long behind = 0;
    try (KafkaProducer<byte[], byte[]> p = producer(acks, 0)) {
      p.partitionsFor(topic);
      long start = System.nanoTime();
      for (int i = 0; i < total; i++) {
        long due = start + i * intervalNs;
        long now;
        // Parked, not spinning: the generator shares two cores with the proxy and brokers.
        // A send that leaves late is still timed from when it left.
        while ((now = System.nanoTime()) < due) {
          LockSupport.parkNanos(due - now);
        }
        if (now - due > intervalNs) {
          behind++;
        }
        final int idx = i;
        final long sentAt = System.nanoTime();
        p.send(new ProducerRecord<>(topic, null, value), (md, e) -> {
          if (e != null) {
            error(e);
            return;
          }
          micros[idx] = (System.nanoTime() - sentAt) / 1000;
        });
      }
      p.flush();
    }
    long[] window = Arrays.copyOfRange(micros, warm, total);
    long missing = Arrays.stream(window).filter(v -> v < 0).count();
    Arrays.sort(window);
    long[] got = Arrays.copyOfRange(window, (int) missing, window.length);
    result.put("records", got.length);
    result.put("missing", missing);
    result.put("late_sends", behind);
    result.put("rate", rate);
    result.put("acks", acks);
    result.put("record_size", size);
    if (got.length > 0) {
      result.put("p50_us", pct(got, 0.50));
      result.put("p99_us", pct(got, 0.99));
      result.put("p999_us", pct(got, 0.999));
      result.put("max_us", got[got.length - 1]);
    }
    return missing == 0 ? 0 : 1;
  }

  private static long pct(long[] sorted, double q) {
    int i = (int) Math.ceil(q * sorted.length) - 1;
    return sorted[Math.max(0, Math.min(sorted.length - 1, i))];
  }

  private int consume() {
    String topic = arg("topic", null);
    long warmupNs = num("warmupSecs", "2") * 1_000_000_000L;
    long windowNs = num("secs", "10") * 1_000_000_000L;
    Properties p = common("bench-consumer");
    p.put("enable.auto.commit", "false");
    p.put("fetch.max.bytes", Integer.toString(50 << 20));
    p.put("max.partition.fetch.bytes", Integer.toString(4 << 20));
    p.put("max.poll.records", "5000");
    p.put("receive.buffer.bytes", "-1");
    long bytes = 0;
    long totalBytes = 0;
    long records = 0;
    long passes = 0;
    double secs;
    try (KafkaConsumer<byte[], byte[]> c =
        new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
      List<TopicPartition> parts = new ArrayList<>();
      for (PartitionInfo pi : c.partitionsFor(topic)) {
        parts.add(new TopicPartition(topic, pi.partition()));
      }
      c.assign(parts);
      Map<TopicPartition, Long> end = c.endOffsets(parts);
      long endTotal = end.values().stream().mapToLong(Long::longValue).sum();
      if (endTotal == 0) {
        throw new IllegalStateException("topic " + topic + " is empty: fill it first");
      }
      c.seekToBeginning(parts);
      long start = System.nanoTime();
      long windowStart = start + warmupNs;
      long deadline = windowStart + windowNs;
      Map<TopicPartition, Long> pos = new HashMap<>();
      long now;
      while ((now = System.nanoTime()) < deadline) {
        ConsumerRecords<byte[], byte[]> recs = c.poll(Duration.ofMillis(500));
        boolean inWindow = System.nanoTime() >= windowStart;
        for (ConsumerRecord<byte[], byte[]> r : recs) {
          totalBytes += r.serializedValueSize() + Math.max(0, r.serializedKeySize());
          if (inWindow) {
            bytes += r.serializedValueSize() + Math.max(0, r.serializedKeySize());
            records++;
          }
          pos.put(new TopicPartition(r.topic(), r.partition()), r.offset() + 1);
        }
        boolean atEnd = true;
        for (TopicPartition tp : parts) {
          if (pos.getOrDefault(tp, 0L) < end.get(tp)) {
            atEnd = false;
          }
        }
        if (atEnd) {
          passes++;
          pos.clear();
          c.seekToBeginning(parts);
        }
      }
      secs = (now - windowStart) / 1e9;
      result.put("topic_records", endTotal);
    }
    result.put("records", records);
    result.put("passes", passes);
    result.put("secs", secs);
    result.put("records_per_sec", records / secs);
    result.put("mb_per_sec", bytes / secs / 1e6);
    result.put("bytes", bytes);
    result.put("total_bytes", totalBytes);
    return 0;
  }
}
