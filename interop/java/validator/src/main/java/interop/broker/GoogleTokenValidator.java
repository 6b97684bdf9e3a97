package interop.broker;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.Writer;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.Base64;
import java.util.HexFormat;
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
 * token presented, so that a test can find the decision for the token it sent.
 *
 * <p>JAAS options (listener.name.X.oauthbearer.sasl.jaas.config): {@code tokeninfoUrl}
 * (required), {@code decisionLog} (optional file), {@code expToleranceSecs} (optional).
 */
public class GoogleTokenValidator implements AuthenticateCallbackHandler {
  private static final Logger LOG = LoggerFactory.getLogger(GoogleTokenValidator.class);
  private static final ObjectMapper JSON = new ObjectMapper();
  /** The OAuth scope Managed Kafka requires of the Google access token. */
  static final String CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform";
  static final AtomicLong ACCEPTED = new AtomicLong();
  static final AtomicLong REFUSED = new AtomicLong();

  private String tokeninfoUrl;
  private Path decisionLog;
  private long expToleranceSecs;
  private HttpClient http;

  @Override
  public void configure(
      Map<String, ?> configs, String saslMechanism, List<AppConfigurationEntry> jaasEntries) {
    if (!"OAUTHBEARER".equals(saslMechanism)) {
      throw new IllegalArgumentException("unexpected SASL mechanism " + saslMechanism);
    }
    Map<String, ?> opts = jaasEntries.get(0).getOptions();
    tokeninfoUrl = (String) opts.get("tokeninfoUrl");
    if (tokeninfoUrl == null || tokeninfoUrl.isEmpty()) {
      throw new IllegalArgumentException("JAAS option tokeninfoUrl is required");
    }
    Object log = opts.get("decisionLog");
    decisionLog = log == null ? null : Path.of((String) log);
    Object tol = opts.get("expToleranceSecs");
    expToleranceSecs = tol == null ? 0 : Long.parseLong((String) tol);
    http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    LOG.info("GoogleTokenValidator configured: tokeninfoUrl={} decisionLog={} expToleranceSecs={}",
        tokeninfoUrl, decisionLog, expToleranceSecs);
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

  /** Thrown for a token that must be refused; {@code reason} is a stable machine-readable word. */
  static final class Refusal extends Exception {
    final String reason;

    Refusal(String reason, String detail) {
      super(detail);
      this.reason = reason;
    }
  }

  private void validate(OAuthBearerValidatorCallback cb) {
    String token = cb.tokenValue();
    ObjectNode rec = JSON.createObjectNode();
    rec.put("ts_ms", System.currentTimeMillis());
    rec.put("presented_fp", fingerprint(token == null ? "" : token));
    try {
      Checked c = check(token, rec);
      long n = ACCEPTED.incrementAndGet();
      rec.put("decision", "accept");
      rec.put("principal", "User:" + c.sub);
      rec.put("accepted_total", n);
      cb.token(c.asKafkaToken(token));
      LOG.info("ACCEPT principal=User:{} exp={} token_fp={} accepted_total={}",
          c.sub, c.exp, rec.path("token_fp").asText(), n);
    } catch (Refusal r) {
      long n = REFUSED.incrementAndGet();
      rec.put("decision", "refuse");
      rec.put("reason", r.reason);
      rec.put("detail", r.getMessage());
      rec.put("refused_total", n);
      cb.error("invalid_token", null, null);
      LOG.warn("REFUSE reason={} detail={} refused_total={}", r.reason, r.getMessage(), n);
    } catch (RuntimeException e) {
      long n = REFUSED.incrementAndGet();
      rec.put("decision", "refuse");
      rec.put("reason", "internal_error");
      rec.put("detail", e.toString());
      rec.put("refused_total", n);
      cb.error("invalid_token", null, null);
      LOG.error("REFUSE reason=internal_error", e);
    }
    writeDecision(rec);
  }

  private static final class Checked {
    String sub;
    long exp;
    long iat;

    OAuthBearerToken asKafkaToken(String value) {
      final String principal = sub;
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
    Checked c = new Checked();
    JsonNode sub = claims.get("sub");
    if (sub == null || !sub.isTextual() || sub.asText().isEmpty()) {
      throw new Refusal("bad_sub", "claim sub missing or empty: " + sub);
    }
    c.sub = sub.asText();
    c.exp = integerClaim(claims, "exp");
    c.iat = integerClaim(claims, "iat");
    long now = System.currentTimeMillis() / 1000L;
    if (c.exp <= now) {
      throw new Refusal("expired", "claim exp=" + c.exp + " is not after now=" + now);
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
    JsonNode info = tokeninfo(raw, rec);
    String email = info.path("email").asText("");
    long infoExp;
    try {
      infoExp = Long.parseLong(info.path("exp").asText(""));
    } catch (NumberFormatException e) {
      throw new Refusal("tokeninfo_bad_exp", "tokeninfo exp=" + info.path("exp"));
    }
    String scope = info.path("scope").asText("");
    rec.put("tokeninfo_email", email);
    rec.put("tokeninfo_exp", infoExp);
    rec.put("tokeninfo_scope", scope);
    rec.put("exp_skew", c.exp - infoExp);
    if (!Set.of(scope.split(" ")).contains(CLOUD_PLATFORM)) {
      throw new Refusal("missing_scope",
          "tokeninfo scope=\"" + scope + "\" lacks " + CLOUD_PLATFORM);
    }
    if (!c.sub.equals(email)) {
      throw new Refusal("sub_mismatch", "claim sub=" + c.sub + " but tokeninfo email=" + email);
    }
    // One-sided: a claim after the real expiry would let a client keep a session the token no
    // longer covers; a claim a little before it is only a client rounding down.
    if (c.exp > infoExp || c.exp < infoExp - expToleranceSecs) {
      throw new Refusal("exp_mismatch", "claim exp=" + c.exp + " but tokeninfo exp=" + infoExp
          + " (want " + (infoExp - expToleranceSecs) + ".." + infoExp + ")");
    }
    return c;
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
      JsonNode n = JSON.readTree(bytes);
      if (n == null || !n.isObject()) {
        throw new Refusal("bad_" + what, what + " is not a JSON object");
      }
      return n;
    } catch (IOException e) {
      throw new Refusal("bad_" + what, what + " is not JSON: " + e.getMessage());
    }
  }

  private JsonNode tokeninfo(String raw, ObjectNode rec) throws Refusal {
    String sep = tokeninfoUrl.contains("?") ? "&" : "?";
    URI uri = URI.create(tokeninfoUrl + sep + "access_token="
        + URLEncoder.encode(raw, StandardCharsets.UTF_8));
    HttpRequest req = HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(10)).GET().build();
    HttpResponse<String> resp;
    try {
      resp = http.send(req, HttpResponse.BodyHandlers.ofString());
    } catch (IOException e) {
      throw new Refusal("tokeninfo_unreachable", e.toString());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new Refusal("tokeninfo_unreachable", "interrupted");
    }
    rec.put("tokeninfo_status", resp.statusCode());
    if (resp.statusCode() != 200) {
      throw new Refusal("tokeninfo_rejected",
          "tokeninfo answered " + resp.statusCode() + ": " + resp.body());
    }
    try {
      return JSON.readTree(resp.body());
    } catch (IOException e) {
      throw new Refusal("tokeninfo_bad_json", e.getMessage());
    }
  }

  static String fingerprint(String raw) {
    try {
      byte[] d = MessageDigest.getInstance("SHA-256").digest(raw.getBytes(StandardCharsets.UTF_8));
      return HexFormat.of().formatHex(d, 0, 6);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  private synchronized void writeDecision(ObjectNode rec) {
    if (decisionLog == null) {
      return;
    }
    try (Writer w = Files.newBufferedWriter(decisionLog, StandardCharsets.UTF_8,
        StandardOpenOption.CREATE, StandardOpenOption.APPEND)) {
      w.write(JSON.writeValueAsString(rec));
      w.write('\n');
    } catch (IOException e) {
      LOG.error("cannot append to decision log {}", decisionLog, e);
    }
  }

  @Override
  public void close() {}
}
