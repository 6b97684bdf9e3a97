package interop.broker;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.metrics.KafkaMetric;
import org.apache.kafka.common.metrics.MetricsReporter;

/**
 * Writes the broker's own SASL (re-)authentication counters (socket-server-metrics, summed over
 * the network processors of each listener) to a JSON file once a second, so the test harness can
 * prove the broker re-authenticated live connections. Config: {@code interop.metrics.file}.
 */
public class ReauthMetricsReporter implements MetricsReporter {
  private static final List<String> NAMES = List.of(
      "successful-authentication-total",
      "failed-authentication-total",
      "successful-reauthentication-total",
      "failed-reauthentication-total",
      "successful-authentication-no-reauth-total",
      // Connections the broker closed because their session expired before re-authentication.
      "expired-connections-killed-count");
  private final Map<MetricName, KafkaMetric> metrics = new ConcurrentHashMap<>();
  /** Final values of metrics already removed (a network processor stopping), kept in the sums. */
  private final Map<MetricName, Long> retired = new ConcurrentHashMap<>();
  private ScheduledExecutorService timer;
  private Path file;

  @Override
  public void configure(Map<String, ?> configs) {
    Object f = configs.get("interop.metrics.file");
    file = f == null ? null : Path.of(f.toString());
  }

  @Override
  public void init(List<KafkaMetric> initial) {
    initial.forEach(this::metricChange);
    if (file != null) {
      timer = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "interop-metrics-dump");
        t.setDaemon(true);
        return t;
      });
      timer.scheduleAtFixedRate(this::dump, 1, 1, TimeUnit.SECONDS);
    }
  }

  @Override
  public void metricChange(KafkaMetric m) {
    MetricName n = m.metricName();
    if ("socket-server-metrics".equals(n.group()) && NAMES.contains(n.name())) {
      metrics.put(n, m);
    }
  }

  @Override
  public void metricRemoval(KafkaMetric m) {
    if (metrics.remove(m.metricName()) != null) {
      retired.put(m.metricName(), value(m));
    }
  }

  private static long value(KafkaMetric m) {
    Object v = m.metricValue();
    return v instanceof Number ? ((Number) v).longValue() : 0L;
  }

  private synchronized void dump() {
    try {
      Map<MetricName, Long> all = new java.util.HashMap<>(retired);
      for (KafkaMetric m : metrics.values()) {
        all.put(m.metricName(), value(m));
      }
      if (all.isEmpty()) {
        return; // nothing registered (yet, or any more): keep the last file
      }
      Map<String, Map<String, Long>> byListener = new TreeMap<>();
      for (Map.Entry<MetricName, Long> e : all.entrySet()) {
        String listener = e.getKey().tags().getOrDefault("listener", "?");
        byListener.computeIfAbsent(listener, k -> new TreeMap<>())
            .merge(e.getKey().name(), e.getValue(), Long::sum);
      }
      StringBuilder sb = new StringBuilder("{");
      boolean first = true;
      for (var e : byListener.entrySet()) {
        sb.append(first ? "" : ",").append('"').append(e.getKey()).append("\":{");
        first = false;
        boolean f2 = true;
        for (var m : e.getValue().entrySet()) {
          sb.append(f2 ? "" : ",").append('"').append(m.getKey()).append("\":").append(m.getValue());
          f2 = false;
        }
        sb.append('}');
      }
      sb.append('}');
      Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
      Files.writeString(tmp, sb.toString(), StandardCharsets.UTF_8);
      Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    } catch (IOException | RuntimeException e) {
      // best effort; the next tick tries again
    }
  }

  @Override
  public void close() {
    if (timer != null) {
      dump();
      timer.shutdownNow();
    }
  }
}
