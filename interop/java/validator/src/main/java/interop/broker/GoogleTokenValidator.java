package interop.broker;

import static interop.broker.GoogleAccessTokens.fingerprint;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import interop.broker.GoogleAccessTokens.Refusal;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import javax.security.auth.callback.Callback;
import javax.security.auth.callback.UnsupportedCallbackException;
import javax.security.auth.login.AppConfigurationEntry;
import org.apache.kafka.common.security.auth.AuthenticateCallbackHandler;
import org.apache.kafka.common.security.oauthbearer.OAuthBearerExtensionsValidatorCallback;
import org.apache.kafka.common.security.oauthbearer.OAuthBearerToken;
import org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallback;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Broker-side OAUTHBEARER validator that checks tokens the way Google Managed Service for
 * Apache Kafka does:
 *
 * <ol>
 *   <li>the token is {@code base64url(header).base64url(claims).base64url(raw Google token)};
 *   <li>header {@code alg} is {@code GOOG_OAUTH2_TOKEN} (and {@code typ} is {@code JWT});
 *   <li>claims carry {@code sub}, integer {@code exp} and {@code iat}; {@code exp} is in the
 *       future;
 *   <li>the third part decodes to a Google access token that tokeninfo recognises, issued
 *       with the {@code https://www.googleapis.com/auth/cloud-platform} scope;
 *   <li>{@code sub} equals tokeninfo's {@code email}; {@code exp} is at most tokeninfo's
 *       {@code exp} and at least {@code exp - expToleranceSecs} (default 0): a claim may
 *       understate the token's life (a client rounding down), never outlive it.
 * </ol>
 *
 * The authenticated principal is {@code User:<sub>}. Every decision is appended as one JSON line
 * to {@code decisionLog} (a JAAS option) so the test harness can assert on it, and logged. Each
 * decision carries {@code presented_fp}, the first 12 hex digits of the SHA-256 of the exact
 * token presented, so that a test can find the decision for the token it sent. The tokeninfo
 * lookup, the refusals, the fingerprints and the decision log are {@link GoogleAccessTokens}'.
 *
 * <p>JAAS options (listener.name.X.oauthbearer.sasl.jaas.config): {@code tokeninfoUrl}
 * (required), {@code decisionLog} (optional file), {@code expToleranceSecs} (optional).
 */
public class GoogleTokenValidator implements AuthenticateCallbackHandler {
  private static final Logger LOG = LoggerFactory.getLogger(GoogleTokenValidator.class);
  static final AtomicLong ACCEPTED = new AtomicLong();
  static final AtomicLong REFUSED = new AtomicLong();

  private GoogleAccessTokens google;
  private long expToleranceSecs;

  @Override
  public void configure(
      Map<String, ?> configs, String saslMechanism, List<AppConfigurationEntry> jaasEntries) {
    if (!"OAUTHBEARER".equals(saslMechanism)) {
      throw new IllegalArgumentException("unexpected SASL mechanism " + saslMechanism);
    }
    Map<String, ?> opts = jaasEntries.get(0).getOptions();
    google = new GoogleAccessTokens(opts, "listener.name.<listener>.oauthbearer.sasl.jaas.config",
        LOG, "", ACCEPTED, REFUSED);
    Object tol = opts.get("expToleranceSecs");
    expToleranceSecs = tol == null ? 0 : Long.parseLong((String) tol);
    LOG.info("GoogleTokenValidator configured: tokeninfoUrl={} decisionLog={} expToleranceSecs={}",
        google.tokeninfoUrl(), google.decisionLog(), expToleranceSecs);
  }

  @Override
  public void handle(Callback[] callbacks) throws IOException, UnsupportedCallbackException {
    for (Callback cb : callbacks) {
      if (cb instanceof OAuthBearerValidatorCallback) {
        validate((OAuthBearerValidatorCallback) cb);
      } else if (cb instanceof OAuthBearerExtensionsValidatorCallback) {
        // Managed Kafka ignores SASL extensions; so do we (they stay unvalidated).
      } else {
        throw new UnsupportedCallbackException(cb);
      }
    }
  }

  private void validate(OAuthBearerValidatorCallback cb) {
    String token = cb.tokenValue();
    ObjectNode rec = GoogleAccessTokens.newRecord();
    rec.put("presented_fp", fingerprint(token == null ? "" : token));
    google.decide(rec, r -> check(token, r), new GoogleAccessTokens.Answer<Checked>() {
      @Override
      public void accept(Checked c) {
        cb.token(c.asKafkaToken(token));
      }

      @Override
      public void refuse() {
        cb.error("invalid_token", null, null);
      }
    });
  }

  private static final class Checked extends GoogleAccessTokens.Accepted {
    final long iat;

    Checked(String sub, long exp, long iat) {
      super(sub, exp);
      this.iat = iat;
    }

    OAuthBearerToken asKafkaToken(String value) {
      final long lifetimeMs = exp * 1000L;
      final Long startMs = iat * 1000L;
      return new OAuthBearerToken() {
        @Override
        public String value() {
          return value;
        }

        @Override
        public Set<String> scope() {
          return Set.of();
        }

        @Override
        public long lifetimeMs() {
          return lifetimeMs;
        }

        @Override
        public String principalName() {
          return principal;
        }

        @Override
        public Long startTimeMs() {
          return startMs;
        }
      };
    }
  }

  private Checked check(String token, ObjectNode rec) throws Refusal {
    if (token == null || token.isEmpty()) {
      throw new Refusal("empty_token", "no token");
    }
    String[] parts = token.split("\\.", -1);
    if (parts.length != 3) {
      throw new Refusal("not_three_parts",
          "token has " + parts.length + " dot-separated parts, want 3 (a bare access token?)");
    }
    JsonNode header = decodeJson(parts[0], "header");
    rec.set("header", header);
    if (!"GOOG_OAUTH2_TOKEN".equals(header.path("alg").asText(null))) {
      throw new Refusal("bad_alg", "header alg=" + header.path("alg") + ", want GOOG_OAUTH2_TOKEN");
    }
    if (!"JWT".equals(header.path("typ").asText(null))) {
      throw new Refusal("bad_typ", "header typ=" + header.path("typ") + ", want JWT");
    }
    JsonNode claims = decodeJson(parts[1], "claims");
    rec.set("claims", claims);
    // Kafka clients before 4.2 decode the claims part with the standard Base64 alphabet; a
    // token that only decodes as base64url breaks those clients (KAFKA-17089). Record it.
    rec.put("claims_std_b64_ok", !parts[1].contains("-") && !parts[1].contains("_"));
    JsonNode subClaim = claims.get("sub");
    if (subClaim == null || !subClaim.isTextual() || subClaim.asText().isEmpty()) {
      throw new Refusal("bad_sub", "claim sub missing or empty: " + subClaim);
    }
    String sub = subClaim.asText();
    long exp = integerClaim(claims, "exp");
    long iat = integerClaim(claims, "iat");
    long now = System.currentTimeMillis() / 1000L;
    if (exp <= now) {
      throw new Refusal("expired", "claim exp=" + exp + " is not after now=" + now);
    }
    String raw;
    try {
      raw = new String(Base64.getUrlDecoder().decode(parts[2]), StandardCharsets.UTF_8);
    } catch (IllegalArgumentException e) {
      throw new Refusal("bad_access_token_part", "third part is not base64url: " + e.getMessage());
    }
    if (raw.isEmpty()) {
      throw new Refusal("bad_access_token_part", "third part decodes to an empty access token");
    }
    rec.put("token_fp", fingerprint(raw));
    GoogleAccessTokens.TokenInfo info = google.tokeninfo(raw, rec);
    long infoExp = info.exp;
    rec.put("exp_skew", exp - infoExp);
    info.requireCloudPlatform();
    if (!sub.equals(info.email)) {
      throw new Refusal("sub_mismatch", "claim sub=" + sub + " but tokeninfo email=" + info.email);
    }
    // One-sided: a claim after the real expiry would let a client keep a session the token no
    // longer covers; a claim a little before it is only a client rounding down.
    if (exp > infoExp || exp < infoExp - expToleranceSecs) {
      throw new Refusal("exp_mismatch", "claim exp=" + exp + " but tokeninfo exp=" + infoExp
          + " (want " + (infoExp - expToleranceSecs) + ".." + infoExp + ")");
    }
    return new Checked(sub, exp, iat);
  }

  private static long integerClaim(JsonNode claims, String name) throws Refusal {
    JsonNode v = claims.get(name);
    if (v == null || !v.isNumber()) {
      throw new Refusal("bad_" + name, "claim " + name + " missing or not a number: " + v);
    }
    if (!v.isIntegralNumber()) {
      // Java's OAuthBearer client truncates; Managed Kafka accepts both. Accept, but record.
      return (long) v.asDouble();
    }
    return v.asLong();
  }

  private JsonNode decodeJson(String part, String what) throws Refusal {
    byte[] bytes;
    try {
      bytes = Base64.getUrlDecoder().decode(part);
    } catch (IllegalArgumentException e) {
      throw new Refusal("bad_" + what, what + " is not base64url: " + e.getMessage());
    }
    try {
      JsonNode n = GoogleAccessTokens.JSON.readTree(bytes);
      if (n == null || !n.isObject()) {
        throw new Refusal("bad_" + what, what + " is not a JSON object");
      }
      return n;
    } catch (IOException e) {
      throw new Refusal("bad_" + what, what + " is not JSON: " + e.getMessage());
    }
  }

  @Override
  public void close() {}
}
