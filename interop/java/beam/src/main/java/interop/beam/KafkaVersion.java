package interop.beam;

import java.io.InputStream;
import java.util.Properties;

/** The version of the kafka-clients jar on the classpath (its own version resource). */
final class KafkaVersion {
  private KafkaVersion() {}

  static String get() {
    try (InputStream in = KafkaVersion.class.getResourceAsStream("/kafka/kafka-version.properties")) {
      Properties p = new Properties();
      p.load(in);
      return p.getProperty("version", "unknown");
    } catch (Exception e) {
      return "unknown";
    }
  }
}
