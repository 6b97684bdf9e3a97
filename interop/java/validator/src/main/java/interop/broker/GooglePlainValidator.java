package interop.broker;

import static interop.broker.GoogleAccessTokens.fingerprint;

import com.fasterxml.jackson.databind.node.ObjectNode;
import interop.broker.GoogleAccessTokens.Refusal;
import java.io.IOException;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import javax.security.auth.callback.Callback;
import javax.security.auth.callback.NameCallback;
import javax.security.auth.callback.UnsupportedCallbackException;
import javax.security.auth.login.AppConfigurationEntry;
import org.apache.kafka.common.security.auth.AuthenticateCallbackHandler;
import org.apache.kafka.common.security.plain.PlainAuthenticateCallback;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Broker-side SASL/PLAIN check the way Google Managed Service for Apache Kafka does it for
 * PLAIN: the username is the principal's email and the password is a Google access token
 * (Managed Kafka also accepts a base64-encoded service account key file as the password; this
 * suite never uses that, so it is refused here). The token is looked up at Google's tokeninfo
 * (here the fake's) and accepted only when tokeninfo knows it, it has not expired, it carries
 * the {@code cloud-platform} scope and its {@code email} equals the username. The authenticated
 * principal is {@code User:<username>} (Kafka's {@code PlainSaslServer} uses the username as
 * the authorization id).
 *
 * <p>Every decision is appended as one JSON line to {@code decisionLog}, in the same shape as
 * {@link GoogleTokenValidator}'s (decision, reason, detail, principal, token_fp), plus
 * {@code "mechanism":"PLAIN"} (both written by {@link GoogleAccessTokens}). The password is
 * never logged; only a short SHA-256 fingerprint of it ({@code token_fp}) is.
 *
 * <p>JAAS options (listener.name.X.plain.sasl.jaas.config): {@code tokeninfoUrl} (required),
 * {@code decisionLog} (optional file).
 */
public class GooglePlainValidator implements AuthenticateCallbackHandler {
  private static final Logger LOG = LoggerFactory.getLogger(GooglePlainValidator.class);
  static final AtomicLong ACCEPTED = new AtomicLong();
  static final AtomicLong REFUSED = new AtomicLong();

  private GoogleAccessTokens google;

  @Override
  public void configure(
      Map<String, ?> configs, String saslMechanism, List<AppConfigurationEntry> jaasEntries) {
    if (!"PLAIN".equals(saslMechanism)) {
      throw new IllegalArgumentException(
          "GooglePlainValidator handles SASL/PLAIN only, it was configured for " + saslMechanism
              + ": set it as listener.name.<listener>.plain.sasl.server.callback.handler.class");
    }
    google = new GoogleAccessTokens(jaasEntries.get(0).getOptions(),
        "listener.name.<listener>.plain.sasl.jaas.config", LOG, "mechanism=PLAIN ", ACCEPTED,
        REFUSED);
    LOG.info("GooglePlainValidator configured: tokeninfoUrl={} decisionLog={}",
        google.tokeninfoUrl(), google.decisionLog());
  }

  @Override
  public void handle(Callback[] callbacks) throws IOException, UnsupportedCallbackException {
    String username = null;
    PlainAuthenticateCallback auth = null;
    for (Callback cb : callbacks) {
      if (cb instanceof NameCallback) {
        username = ((NameCallback) cb).getDefaultName();
      } else if (cb instanceof PlainAuthenticateCallback) {
        auth = (PlainAuthenticateCallback) cb;
      } else {
        throw new UnsupportedCallbackException(cb);
      }
    }
    if (auth == null) {
      throw new UnsupportedCallbackException(null, "no PlainAuthenticateCallback");
    }
    decide(username, new String(auth.password()), auth);
  }

  private void decide(String username, String password, PlainAuthenticateCallback auth) {
    ObjectNode rec = GoogleAccessTokens.newRecord();
    rec.put("mechanism", "PLAIN");
    rec.put("username", username);
    google.decide(rec, r -> new GoogleAccessTokens.Accepted(username, check(username, password, r)),
        new GoogleAccessTokens.Answer<GoogleAccessTokens.Accepted>() {
          @Override
          public void accept(GoogleAccessTokens.Accepted a) {
            auth.authenticated(true);
          }

          @Override
          public void refuse() {
            auth.authenticated(false);
          }
        });
  }

  /** Returns tokeninfo's {@code exp} of an acceptable password; throws the refusal otherwise. */
  private long check(String username, String password, ObjectNode rec)
      throws Refusal {
    if (username == null || username.isEmpty()) {
      throw new Refusal("empty_username",
          "username is empty; Managed Kafka wants the principal's email");
    }
    if (password.isEmpty()) {
      throw new Refusal("empty_password",
          "password is empty; Managed Kafka wants a Google access token");
    }
    rec.put("token_fp", fingerprint(password));
    // What was presented is the access token itself (GoogleTokenValidator's presented_fp).
    rec.put("presented_fp", rec.path("token_fp").asText());
    if (password.chars().filter(c -> c == '.').count() == 2) {
      // The OAUTHBEARER token (header.claims.access-token) sent as a PLAIN password: a client
      // mixed the mechanisms up.
      throw new Refusal("kafka_token_as_password",
          "password has three dot-separated parts (the OAUTHBEARER token?); PLAIN wants the "
              + "raw Google access token");
    }
    GoogleAccessTokens.TokenInfo info = google.tokeninfo(password, rec);
    info.requireCloudPlatform();
    long infoExp = info.exp;
    long now = System.currentTimeMillis() / 1000L;
    if (infoExp <= now) {
      throw new Refusal("expired",
          "access token expired at " + infoExp + ", now=" + now);
    }
    if (!username.equals(info.email)) {
      throw new Refusal("username_mismatch",
          "username=" + username + " but tokeninfo email=" + info.email);
    }
    return infoExp;
  }

  @Override
  public void close() {}
}
