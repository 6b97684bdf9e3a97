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
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
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
 * {@code "mechanism":"PLAIN"}. The password is never
 * logged; only a short SHA-256 fingerprint of it ({@code token_fp}) is.
 *
 * <p>JAAS options (listener.name.X.plain.sasl.jaas.config): {@code tokeninfoUrl} (required),
 * {@code decisionLog} (optional file).
 */
public class GooglePlainValidator implements AuthenticateCallbackHandler {
  private static final Logger LOG = LoggerFactory.getLogger(GooglePlainValidator.class);
  private static final ObjectMapper JSON = new ObjectMapper();
  /** The OAuth scope Managed Kafka requires of the Google access token. */
  static final String CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform";
  static final AtomicLong ACCEPTED = new AtomicLong();
  static final AtomicLong REFUSED = new AtomicLong();

  private String tokeninfoUrl;
  private Path decisionLog;
  private HttpClient http;

  @Override
  public void configure(
      Map<String, ?> configs, String saslMechanism, List<AppConfigurationEntry> jaasEntries) {
    if (!"PLAIN".equals(saslMechanism)) {
      throw new IllegalArgumentException(
          "GooglePlainValidator handles SASL/PLAIN only, it was configured for " + saslMechanism
              + ": set it as listener.name.<listener>.plain.sasl.server.callback.handler.class");
    }
    Map<String, ?> opts = jaasEntries.get(0).getOptions();
    tokeninfoUrl = (String) opts.get("tokeninfoUrl");
    if (tokeninfoUrl == null || tokeninfoUrl.isEmpty()) {
      throw new IllegalArgumentException(
          "JAAS option tokeninfoUrl is required (listener.name.<listener>.plain.sasl.jaas.config)");
    }
    Object log = opts.get("decisionLog");
    decisionLog = log == null ? null : Path.of((String) log);
    http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    LOG.info("GooglePlainValidator configured: tokeninfoUrl={} decisionLog={}", tokeninfoUrl,
        decisionLog);
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
    ObjectNode rec = JSON.createObjectNode();
    rec.put("ts_ms", System.currentTimeMillis());
    rec.put("mechanism", "PLAIN");
    rec.put("username", username);
    try {
      long exp = check(username, password, rec);
      long n = ACCEPTED.incrementAndGet();
      rec.put("decision", "accept");
      rec.put("principal", "User:" + username);
      rec.put("accepted_total", n);
      auth.authenticated(true);
      LOG.info("ACCEPT mechanism=PLAIN principal=User:{} exp={} token_fp={} accepted_total={}",
          username, exp, rec.path("token_fp").asText(), n);
    } catch (Refusal r) {
      long n = REFUSED.incrementAndGet();
      rec.put("decision", "refuse");
      rec.put("reason", r.reason);
      rec.put("detail", r.getMessage());
      rec.put("refused_total", n);
      auth.authenticated(false);
      LOG.warn("REFUSE mechanism=PLAIN reason={} detail={} refused_total={}", r.reason,
          r.getMessage(), n);
    } catch (RuntimeException e) {
      long n = REFUSED.incrementAndGet();
      rec.put("decision", "refuse");
      rec.put("reason", "internal_error");
      rec.put("detail", e.toString());
      rec.put("refused_total", n);
      auth.authenticated(false);
      LOG.error("REFUSE mechanism=PLAIN reason=internal_error", e);
    }
    writeDecision(rec);
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
    JsonNode info = tokeninfo(password, rec);
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
    if (!Set.of(scope.split(" ")).contains(CLOUD_PLATFORM)) {
      throw new Refusal("missing_scope",
          "tokeninfo scope=\"" + scope + "\" lacks " + CLOUD_PLATFORM);
    }
    long now = System.currentTimeMillis() / 1000L;
    if (infoExp <= now) {
      throw new Refusal("expired",
          "access token expired at " + infoExp + ", now=" + now);
    }
    if (!username.equals(email)) {
      throw new Refusal("username_mismatch",
          "username=" + username + " but tokeninfo email=" + email);
    }
    return infoExp;
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

  /** Thrown for a password that must be refused; {@code reason} is a stable word. */
  static final class Refusal extends Exception {
    final String reason;

    Refusal(String reason, String detail) {
      super(detail);
      this.reason = reason;
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

  // The PLAIN decisions go to their own file (a JAAS option of the PLAIN listener mechanism),
  // so two validators never interleave writes in one file.
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
