package interop.beam;

import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import org.apache.beam.runners.direct.DirectRunner;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.io.kafka.KafkaIO;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.transforms.DoFn;
import org.apache.beam.sdk.transforms.ParDo;
import org.apache.beam.sdk.values.KV;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.joda.time.Duration;

/**
 * Reads {@code count} records with Apache Beam's {@code KafkaIO.read()} on the DirectRunner,
 * configured the way the blog post tells Dataflow users to (SASL OAUTHBEARER, the stock
 * {@code OAuthBearerLoginCallbackHandler}, {@code clientId="unused"}, our sidecar's URL), and
 * checks every record one by one: key {@code k-i}, value {@code <prefix>-i}, each exactly once.
 *
 * <p>Arguments: bootstrap tokenUrl topic count prefix. Prints {@code RESULT {json}}; exit 0 only
 * when all records came back intact.
 */
public final class ReadWithKafkaIO {
  static final ConcurrentLinkedQueue<KV<String, String>> SEEN = new ConcurrentLinkedQueue<>();

  static final class Collect extends DoFn<KV<String, String>, Void> {
    @ProcessElement
    public void process(@Element KV<String, String> kv) {
      SEEN.add(kv);
    }
  }

  public static void main(String[] args) {
    if (args.length != 5) {
      System.err.println("usage: ReadWithKafkaIO bootstrap tokenUrl topic count prefix");
      System.exit(64);
    }
    String bootstrap = args[0];
    String tokenUrl = args[1];
    String topic = args[2];
    int count = Integer.parseInt(args[3]);
    String prefix = args[4];

    Map<String, Object> consumerConfig = new HashMap<>();
    // The blog post's settings (SASL_SSL there; the suite's broker listens in plaintext).
    consumerConfig.put("security.protocol", "SASL_PLAINTEXT");
    consumerConfig.put("sasl.mechanism", "OAUTHBEARER");
    consumerConfig.put("sasl.login.callback.handler.class",
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler");
    consumerConfig.put("sasl.oauthbearer.token.endpoint.url", tokenUrl);
    consumerConfig.put("sasl.jaas.config",
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required"
            + " clientId=\"unused\" clientSecret=\"unused\";");
    consumerConfig.put("auto.offset.reset", "earliest");

    PipelineOptions options = PipelineOptionsFactory.create();
    options.setRunner(DirectRunner.class);
    Pipeline p = Pipeline.create(options);
    p.apply("ReadFromKafka", KafkaIO.<String, String>read()
            .withBootstrapServers(bootstrap)
            .withTopic(topic)
            .withKeyDeserializer(StringDeserializer.class)
            .withValueDeserializer(StringDeserializer.class)
            .withConsumerConfigUpdates(consumerConfig)
            .withMaxNumRecords(count)
            .withoutMetadata())
        .apply("Collect", ParDo.of(new Collect()));

    Map<String, Object> result = new TreeMap<>();
    result.put("client_version", KafkaVersion.get());
    String error = null;
    try {
      PipelineResult.State state = p.run().waitUntilFinish(Duration.standardMinutes(4));
      result.put("pipeline_state", String.valueOf(state));
      if (state != PipelineResult.State.DONE) {
        error = "pipeline did not finish: state " + state;
      }
    } catch (RuntimeException e) {
      error = "pipeline failed: " + e;
      for (Throwable c = e.getCause(); c != null && c != c.getCause(); c = c.getCause()) {
        error += " <- caused by " + c;
      }
      e.printStackTrace();
    }

    // Every record exactly once, with the right key and value.
    Map<Integer, Integer> seenCount = new HashMap<>();
    int bad = 0;
    StringBuilder problems = new StringBuilder();
    for (KV<String, String> kv : SEEN) {
      String k = kv.getKey();
      int i = -1;
      try {
        i = Integer.parseInt(k.substring(2));
      } catch (RuntimeException e) {
        // fall through: counted as bad below
      }
      if (!k.startsWith("k-") || i < 0 || i >= count || !(prefix + "-" + i).equals(kv.getValue())) {
        if (bad++ < 10) {
          problems.append("unexpected record key=").append(k).append(" value=")
              .append(kv.getValue()).append("; ");
        }
        continue;
      }
      seenCount.merge(i, 1, Integer::sum);
    }
    int missing = 0;
    int dup = 0;
    for (int i = 0; i < count; i++) {
      int c = seenCount.getOrDefault(i, 0);
      if (c == 0) {
        if (missing++ < 10) {
          problems.append("missing k-").append(i).append("; ");
        }
      } else if (c > 1) {
        dup++;
      }
    }
    result.put("read", SEEN.size());
    result.put("distinct_ok", seenCount.size());
    result.put("mismatched", bad);
    result.put("missing", missing);
    result.put("duplicated", dup);
    if (error == null && (bad > 0 || missing > 0 || dup > 0 || SEEN.size() != count)) {
      error = "records wrong: " + problems;
    }
    result.put("ok", error == null);
    result.put("error", error);
    StringBuilder sb = new StringBuilder("{");
    for (Map.Entry<String, Object> e : result.entrySet()) {
      if (sb.length() > 1) {
        sb.append(',');
      }
      sb.append('"').append(e.getKey()).append("\":");
      Object v = e.getValue();
      if (v == null) {
        sb.append("null");
      } else if (v instanceof Number || v instanceof Boolean) {
        sb.append(v);
      } else {
        sb.append('"').append(v.toString().replace("\\", "\\\\").replace("\"", "\\\"")
            .replace("\n", "\\n")).append('"');
      }
    }
    sb.append('}');
    System.out.println("RESULT " + sb);
    System.out.flush();
    System.exit(error == null ? 0 : 1);
  }
}
