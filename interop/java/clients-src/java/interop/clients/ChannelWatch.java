package interop.clients;

import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.nio.channels.SelectionKey;
import java.nio.channels.SocketChannel;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Deque;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;

/**
 * Per-connection (re-)authentication counts of a soak's clients, from the clients themselves.
 *
 * <p>kafka-clients counts re-authentications per client only ({@code
 * successful-reauthentication-total}), and its log lines about them name no connection
 * ({@code Selector}: "Successfully re-authenticated with localhost/127.0.0.1"; {@code
 * SaslClientAuthenticator}'s lines name nothing). Each connection's {@code KafkaChannel} does
 * count its own: {@code successfulAuthentications()}, one for the first authentication and one
 * per re-authentication (the counter the client's metric is fed from). This samples, every
 * {@value #EVERY_MS} ms, every channel of each registered client's network {@code Selector}
 * (found by reflection: kafka-clients keeps it private) with its node id and local port, and
 * the node's {@code request-total} (the client's per-node metric: one connection per node, so
 * per connection), and keeps per connection: when it was first and last seen, its
 * authentication count then, and the longest stretch it sent no request (a connection idle for
 * a whole session has nothing to re-authenticate for: kafka-clients re-authenticates before a
 * send).
 *
 * <p>A channel with nothing to authenticate (PLAINTEXT, through the proxy) counts 0 and is
 * reported all the same: there the local port is what ties it to the proxy's upstream
 * connection, and a connection that disappears before the soak's end is one the client lost.
 */
final class ChannelWatch extends Thread {
  static final long EVERY_MS = 500;

  private final long t0 = System.nanoTime();
  private final Map<String, Object> clients = Collections.synchronizedMap(new LinkedHashMap<>());
  private final Map<String, Supplier<Map<MetricName, ? extends Metric>>> metrics =
      Collections.synchronizedMap(new LinkedHashMap<>());
  private final Map<String, Conn> conns = new TreeMap<>();
  private final List<String> problems = Collections.synchronizedList(new ArrayList<>());

  ChannelWatch() {
    super("channel-watch");
    setDaemon(true);
  }

  /** Watches `client` (a KafkaProducer or KafkaConsumer) under `name` until {@link #drop}. */
  void watch(String name, Object client, Supplier<Map<MetricName, ? extends Metric>> m) {
    clients.put(name, client);
    metrics.put(name, m);
    sample();
  }

  /** A last sample of `name`, taken before the client is closed, then no more. */
  void drop(String name) {
    sample();
    clients.remove(name);
    metrics.remove(name);
  }

  @Override
  public void run() {
    while (true) {
      try {
        Thread.sleep(EVERY_MS);
      } catch (InterruptedException e) {
        return;
      }
      sample();
    }
  }

  private static final class Conn {
    String client;
    String node;
    int port;
    long firstMs;
    long lastMs;
    int authsFirst;
    int authsLast;
    long requestsFirst = -1;
    long requestsLast = -1;
    long lastRequestMs;
    long longestIdleMs;
  }

  synchronized void sample() {
    long now = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
    List<String> names;
    synchronized (clients) {
      names = new ArrayList<>(clients.keySet());
    }
    for (String name : names) {
      Object client = clients.get(name);
      Supplier<Map<MetricName, ? extends Metric>> m = metrics.get(name);
      if (client == null || m == null) {
        continue;
      }
      Map<String, Long> requests = requestTotals(m.get());
      for (Object selector : selectors(client)) {
        for (Object channel : channels(selector)) {
          try {
            String node = (String) call(channel, "id");
            int auths = (Integer) call(channel, "successfulAuthentications");
            SelectionKey key = (SelectionKey) call(channel, "selectionKey");
            SocketAddress local = ((SocketChannel) key.channel()).getLocalAddress();
            if (!(local instanceof InetSocketAddress)) {
              continue; // not connected yet: the next sample sees it
            }
            int port = ((InetSocketAddress) local).getPort();
            String k = name + "/" + node + "/" + port;
            Conn c = conns.get(k);
            long req = requests.getOrDefault(node, -1L);
            if (c == null) {
              c = new Conn();
              c.client = name;
              c.node = node;
              c.port = port;
              c.firstMs = now;
              c.authsFirst = auths;
              c.requestsFirst = req;
              c.lastRequestMs = now;
              conns.put(k, c);
            } else if (req > c.requestsLast) {
              c.lastRequestMs = now;
            }
            c.lastMs = now;
            c.authsLast = auths;
            c.requestsLast = req;
            c.longestIdleMs = Math.max(c.longestIdleMs, now - c.lastRequestMs);
          } catch (Exception e) {
            // A channel closing under us (its socket gone): the next sample sees the rest.
            if (problems.size() < 5) {
              problems.add(name + ": " + e);
            }
          }
        }
      }
    }
  }

  /** One map per connection seen, for the RESULT line (times in ms since the watch began). */
  synchronized List<Map<String, Object>> summary() {
    List<Map<String, Object>> out = new ArrayList<>();
    for (Conn c : conns.values()) {
      Map<String, Object> m = new LinkedHashMap<>();
      m.put("client", c.client);
      m.put("node", c.node);
      m.put("local_port", c.port);
      m.put("first_ms", c.firstMs);
      m.put("last_ms", c.lastMs);
      m.put("auths_first", c.authsFirst);
      m.put("auths_last", c.authsLast);
      m.put("requests", c.requestsLast - c.requestsFirst);
      m.put("longest_idle_ms", c.longestIdleMs);
      out.add(m);
    }
    return out;
  }

  List<String> problems() {
    return new ArrayList<>(problems);
  }

  /** `request-total` per node id ("node-3" → "3"), from the per-node metric groups. */
  private static Map<String, Long> requestTotals(Map<MetricName, ? extends Metric> all) {
    Map<String, Long> out = new TreeMap<>();
    for (Map.Entry<MetricName, ? extends Metric> e : all.entrySet()) {
      String node = e.getKey().tags().get("node-id");
      if (node == null || !e.getKey().name().equals("request-total")) {
        continue;
      }
      Object v = e.getValue().metricValue();
      if (v instanceof Number && node.startsWith("node-")) {
        out.put(node.substring("node-".length()), ((Number) v).longValue());
      }
    }
    return out;
  }

  private final Map<Object, List<Object>> selectorCache = new IdentityHashMap<>();

  /** The client's org.apache.kafka.common.network.Selector(s): a breadth-first walk over its
   * kafka-clients fields (the producer's sender's NetworkClient, the consumer's delegate's
   * ConsumerNetworkClient's), so it works across client versions without naming the path. */
  private List<Object> selectors(Object client) {
    List<Object> cached = selectorCache.get(client);
    if (cached != null) {
      return cached;
    }
    List<Object> found = new ArrayList<>();
    Set<Object> seen = Collections.newSetFromMap(new IdentityHashMap<>());
    Deque<Object[]> queue = new ArrayDeque<>();
    queue.add(new Object[] {client, 0});
    while (!queue.isEmpty()) {
      Object[] item = queue.poll();
      Object o = item[0];
      int depth = (Integer) item[1];
      if (o == null || !seen.add(o)) {
        continue;
      }
      if (o.getClass().getName().equals("org.apache.kafka.common.network.Selector")) {
        found.add(o);
        continue;
      }
      if (depth >= 6) {
        continue;
      }
      for (Class<?> cl = o.getClass(); cl != null && cl != Object.class; cl = cl.getSuperclass()) {
        for (Field f : cl.getDeclaredFields()) {
          if (Modifier.isStatic(f.getModifiers()) || f.getType().isPrimitive()) {
            continue;
          }
          try {
            f.setAccessible(true);
            Object v = f.get(o);
            if (v != null && v.getClass().getName().startsWith("org.apache.kafka.")) {
              queue.add(new Object[] {v, depth + 1});
            }
          } catch (Exception e) {
            // Not ours to read (a JDK class): skip.
          }
        }
      }
    }
    if (!found.isEmpty()) {
      selectorCache.put(client, found);
    } else if (problems.size() < 5) {
      problems.add("no Selector found in " + client.getClass().getName());
    }
    return found;
  }

  @SuppressWarnings("unchecked")
  private static List<Object> channels(Object selector) {
    for (int attempt = 0; attempt < 3; attempt++) {
      try {
        return (List<Object>) call(selector, "channels");
      } catch (Exception e) {
        // The network thread changed the map while it was copied: again.
      }
    }
    return List.of();
  }

  private static Object call(Object o, String method) throws Exception {
    Method m = o.getClass().getMethod(method);
    m.setAccessible(true);
    return m.invoke(o);
  }
}
