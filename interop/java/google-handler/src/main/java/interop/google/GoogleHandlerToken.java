package interop.google;

import com.google.cloud.hosted.kafka.auth.GcpLoginCallbackHandler;
import java.util.List;
import java.util.Map;
import javax.security.auth.callback.Callback;
import javax.security.auth.login.AppConfigurationEntry;
import org.apache.kafka.common.security.oauthbearer.OAuthBearerToken;
import org.apache.kafka.common.security.oauthbearer.OAuthBearerTokenCallback;

/**
 * Asks Google's own {@code GcpLoginCallbackHandler} for a token, exactly as a Kafka client would
 * (configure, then an {@link OAuthBearerTokenCallback}), and prints it as one JSON line:
 * {@code TOKEN {"value":..,"principal":..,"lifetime_ms":..,"start_ms":..}}. Credentials come
 * from Application Default Credentials: the harness points GCE_METADATA_HOST at the fake.
 */
public final class GoogleHandlerToken {
  public static void main(String[] args) throws Exception {
    GcpLoginCallbackHandler handler = new GcpLoginCallbackHandler();
    handler.configure(Map.of(), "OAUTHBEARER", List.of(new AppConfigurationEntry(
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule",
        AppConfigurationEntry.LoginModuleControlFlag.REQUIRED, Map.of())));
    OAuthBearerTokenCallback cb = new OAuthBearerTokenCallback();
    handler.handle(new Callback[] {cb});
    OAuthBearerToken t = cb.token();
    if (t == null) {
      System.err.println("GcpLoginCallbackHandler returned no token: " + cb.errorCode() + " "
          + cb.errorDescription());
      System.exit(1);
    }
    System.out.println("TOKEN {\"value\":\"" + t.value() + "\",\"principal\":\""
        + t.principalName().replace("\\", "\\\\").replace("\"", "\\\"")
        + "\",\"lifetime_ms\":" + t.lifetimeMs() + ",\"start_ms\":" + t.startTimeMs() + "}");
    handler.close();
  }
}
