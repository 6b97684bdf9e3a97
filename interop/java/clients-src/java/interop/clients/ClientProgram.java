package interop.clients;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Function;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The scaffold every Java client program of the suite ({@link RoundTrip},
 * {@link ClusterRoundTrip}, {@link MatrixClient}, {@link KafkaLoad}) shares: {@code key=value}
 * arguments, the client configuration for each way of reaching the brokers, the error list,
 * the one {@code RESULT {json}} line on stdout and the exit status.
 *
 * <p>A program implements {@link #run()} (returning 0 when it found nothing wrong) and its
 * {@code main} calls {@link #main(String[], Function)}. {@link #run()} throwing counts as an
 * error of the current {@link #step} and exits 2; any recorded error exits 1.
 *
 * <p>The RESULT line carries whatever the program put in {@link #result}, plus {@code ok},
 * {@code step}, the first {@value #ERRORS_KEPT} {@code errors} and {@code error_count}
 * (a program may report its outcome differently: {@link #report(boolean)}).
 */
abstract class ClientProgram {
  static final String HANDLER =
      "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler";
  static final String OAUTHBEARER_JAAS =
      "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required"
          + " clientId=\"unused\" clientSecret=\"unused\";";
  /** How many error messages the RESULT line carries (all of them are counted). */
  static final int ERRORS_KEPT = 20;

  final Map<String, String> args;
  final Map<String, Object> result = new TreeMap<>();
  /** The first {@link #ERRORS_KEPT} errors, in the order they were seen. */
  private final List<String> errors = Collections.synchronizedList(new ArrayList<>());
  private final AtomicLong errorCount = new AtomicLong();
  volatile String step = "start";

  ClientProgram(Map<String, String> args) {
    this.args = args;
  }

  /** The program; returns 0 when it found nothing wrong (errors also make it fail). */
  abstract int run() throws Exception;

  /** Parses {@code key=value} arguments, runs the program, prints RESULT and exits. */
  static void main(String[] argv, Function<Map<String, String>, ClientProgram> make) {
    Map<String, String> a = new HashMap<>();
    for (String s : argv) {
      int eq = s.indexOf('=');
      if (eq < 0) {
        System.err.println("argument without '=': " + s);
        System.exit(64);
      }
      a.put(s.substring(0, eq), s.substring(eq + 1));
    }
    ClientProgram program = make.apply(a);
    int rc;
    try {
      rc = program.run();
    } catch (Throwable t) {
      program.failed(t);
      t.printStackTrace();
      rc = 2;
    }
    boolean ok = rc == 0 && program.errorCount() == 0;
    program.report(ok);
    System.out.println("RESULT " + Json.write(program.result));
    System.out.flush();
    System.exit(ok ? 0 : (rc == 0 ? 1 : rc));
  }

  /** {@link #run()} threw {@code t}. */
  void failed(Throwable t) {
    error(step + ": " + describe(t));
  }

  /** Puts the outcome into {@link #result}. */
  void report(boolean ok) {
    result.put("ok", ok);
    result.put("step", step);
    result.put("errors", errors());
    result.put("error_count", errorCount());
  }

  /** Records one error (thread-safe); only the first {@link #ERRORS_KEPT} keep their text. */
  void error(String what) {
    if (errorCount.getAndIncrement() < ERRORS_KEPT) {
      errors.add(what);
    }
  }

  long errorCount() {
    return errorCount.get();
  }

  List<String> errors() {
    synchronized (errors) {
      return new ArrayList<>(errors);
    }
  }

  String arg(String k, String dflt) {
    String v = args.get(k);
    if (v == null && dflt == null) {
      throw new IllegalArgumentException("missing argument " + k + "=...");
    }
    return v == null ? dflt : v;
  }

  long num(String k, String dflt) {
    return Long.parseLong(arg(k, dflt));
  }

  /** The {@code security} argument's default (the program's usual way to the brokers). */
  String defaultSecurity() {
    return "plaintext";
  }

  /**
   * {@code bootstrap.servers}, {@code client.id} and the security settings the argument
   * {@code security} names: {@code plaintext} (through the proxy: nothing else),
   * {@code sasl_ssl} (direct: OAUTHBEARER through our sidecar's token endpoint
   * {@code tokenUrl}, TLS trusting the PEM {@code truststore}), {@code sasl_plaintext}
   * (OAUTHBEARER without TLS) or {@code sasl_ssl_plain} (Managed Kafka's PLAIN: username =
   * {@code username}, password = a Google access token from the environment variable
   * {@code INTEROP_PLAIN_PASSWORD}, so it is in no argument list or log).
   */
  Properties common(String clientId) {
    Properties p = new Properties();
    p.put("bootstrap.servers", arg("bootstrap", null));
    p.put("client.id", clientId);
    String security = arg("security", defaultSecurity());
    switch (security) {
      case "plaintext":
        // Through the proxy: nothing but bootstrap.servers (PLAINTEXT is the default).
        break;
      case "sasl_ssl":
        p.put("security.protocol", "SASL_SSL");
        trustTestCa(p);
        oauthbearer(p);
        break;
      case "sasl_plaintext":
        p.put("security.protocol", "SASL_PLAINTEXT");
        oauthbearer(p);
        break;
      case "sasl_ssl_plain":
        p.put("security.protocol", "SASL_SSL");
        trustTestCa(p);
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
            + ": want plaintext (through a proxy), sasl_ssl, sasl_ssl_plain or sasl_plaintext");
    }
    return p;
  }

  private void trustTestCa(Properties p) {
    p.put("ssl.truststore.type", "PEM");
    p.put("ssl.truststore.location", arg("truststore", null));
  }

  /** OAUTHBEARER from our sidecar, the stock handler configured exactly as users do. */
  private void oauthbearer(Properties p) {
    p.put("sasl.mechanism", "OAUTHBEARER");
    p.put("sasl.oauthbearer.token.endpoint.url", arg("tokenUrl", null));
    p.put("sasl.login.callback.handler.class", HANDLER);
    p.put("sasl.jaas.config", OAUTHBEARER_JAAS);
  }

  /** {@link #common} plus String serializers and acks=all. */
  Properties stringProducer(String clientId) {
    Properties p = common(clientId);
    p.put("key.serializer", StringSerializer.class.getName());
    p.put("value.serializer", StringSerializer.class.getName());
    p.put("acks", "all");
    return p;
  }

  /** {@link #common} plus String deserializers, in {@code group} from the earliest offset,
   * committing only explicitly. */
  Properties stringConsumer(String clientId, String group) {
    Properties p = common(clientId);
    p.put("key.deserializer", StringDeserializer.class.getName());
    p.put("value.deserializer", StringDeserializer.class.getName());
    p.put("group.id", group);
    p.put("auto.offset.reset", "earliest");
    p.put("enable.auto.commit", "false");
    return p;
  }

  static String describe(Throwable t) {
    StringBuilder sb = new StringBuilder(t.toString());
    for (Throwable c = t.getCause(); c != null && c != c.getCause(); c = c.getCause()) {
      sb.append(" <- caused by ").append(c);
    }
    return sb.toString();
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

  /**
   * The producer side of a soak: in a thread of its own, {@code send} is called for record
   * n = 0, 1, 2... one every {@code intervalMs} until {@code endNanos} (System.nanoTime); then
   * the producer is flushed and its SASL counters kept in {@link #metrics}. {@link #sent} is
   * how many records were handed to the producer; {@link #failure} what stopped it, if
   * anything did.
   */
  static final class SoakProducer extends Thread {
    final AtomicLong sent = new AtomicLong();
    final java.util.concurrent.atomic.AtomicReference<String> failure =
        new java.util.concurrent.atomic.AtomicReference<>();
    final Map<String, Object> metrics = new java.util.concurrent.ConcurrentHashMap<>();
    private final Properties props;
    private final long endNanos;
    private final long intervalMs;
    private final java.util.function.BiConsumer<KafkaProducer<String, String>, Long> send;
    /** Set before start() to have the producer's connections watched (see ChannelWatch). */
    ChannelWatch watch;

    SoakProducer(Properties props, long endNanos, long intervalMs,
        java.util.function.BiConsumer<KafkaProducer<String, String>, Long> send) {
      super("soak-producer");
      this.props = props;
      this.endNanos = endNanos;
      this.intervalMs = intervalMs;
      this.send = send;
    }

    @Override
    public void run() {
      try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
        if (watch != null) {
          watch.watch("producer", producer, producer::metrics);
        }
        try {
          for (long n = 0; System.nanoTime() < endNanos; n++) {
            send.accept(producer, n);
            sent.set(n + 1);
            Thread.sleep(intervalMs);
          }
          producer.flush();
        } finally {
          // Also when sending failed: the counters say what the connections did until then.
          if (watch != null) {
            watch.drop("producer");
          }
          metrics.putAll(authMetrics(producer.metrics()));
        }
      } catch (Throwable t) {
        failure.set(describe(t));
      }
    }
  }

  /** Milliseconds since {@code t0} (a System.nanoTime reading). */
  static long millisSince(long t0) {
    return java.util.concurrent.TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
  }
}
