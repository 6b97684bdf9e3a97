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
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;

/**
 * What both broker-side validators ({@link GoogleTokenValidator} for OAUTHBEARER,
 * {@link GooglePlainValidator} for PLAIN) do the same way: ask Google's tokeninfo (here the
 * fake's) about an access token, refuse with a stable reason, fingerprint what was presented
 * (never log it), and append every decision as one JSON line to the decision log.
 *
 * <p>One instance per configured validator; the accept/refuse counters are the validator
 * class's own (shared by its instances), so each mechanism counts its decisions apart.
 *
 * <p>JAAS options read here: {@code tokeninfoUrl} (required) and {@code decisionLog}
 * (optional file).
 */
final class GoogleAccessTokens {
  static final ObjectMapper JSON = new ObjectMapper();
  /** The OAuth scope Managed Kafka requires of the Google access token. */
  static final String CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform";

  /** Thrown for a credential that must be refused; {@code reason} is a stable word. */
  static final class Refusal extends Exception {
    final String reason;

    Refusal(String reason, String detail) {
      super(detail);
      this.reason = reason;
    }
  }

  /** What tokeninfo said about an access token. */
  static final class TokenInfo {
    final String email;
    final long exp;
    final String scope;

    private TokenInfo(String email, long exp, String scope) {
      this.email = email;
      this.exp = exp;
      this.scope = scope;
    }

    /** Refuses ({@code missing_scope}) a token issued without the cloud-platform scope. */
    void requireCloudPlatform() throws Refusal {
      if (!Set.of(scope.split(" ")).contains(CLOUD_PLATFORM)) {
        throw new Refusal("missing_scope",
            "tokeninfo scope=\"" + scope + "\" lacks " + CLOUD_PLATFORM);
      }
    }
  }

  /** An accepted credential: whose it is ({@code User:<principal>}) and when it expires. */
  static class Accepted {
    final String principal;
    final long exp;

    Accepted(String principal, long exp) {
      this.principal = principal;
      this.exp = exp;
    }
  }

  /** A validator's check: fills {@code rec} with what it found, refuses or accepts. */
  interface Check<A extends Accepted> {
    A run(ObjectNode rec) throws Refusal;
  }

  /** What the validator answers the broker's callback. */
  interface Answer<A extends Accepted> {
    void accept(A accepted);

    void refuse();
  }

  private final Logger log;
  /** Put before every ACCEPT/REFUSE log line's fields ("" or "mechanism=PLAIN "). */
  private final String logPrefix;
  private final AtomicLong accepted;
  private final AtomicLong refused;
  private final String tokeninfoUrl;
  private final Path decisionLog;
  private final HttpClient http;

  /**
   * @param jaasHint where the JAAS options belong, named in the error for a missing
   *     {@code tokeninfoUrl}
   */
  GoogleAccessTokens(Map<String, ?> opts, String jaasHint, Logger log, String logPrefix,
      AtomicLong accepted, AtomicLong refused) {
    this.log = log;
    this.logPrefix = logPrefix;
    this.accepted = accepted;
    this.refused = refused;
    tokeninfoUrl = (String) opts.get("tokeninfoUrl");
    if (tokeninfoUrl == null || tokeninfoUrl.isEmpty()) {
      throw new IllegalArgumentException("JAAS option tokeninfoUrl is required (" + jaasHint + ")");
    }
    Object file = opts.get("decisionLog");
    decisionLog = file == null ? null : Path.of((String) file);
    http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
  }

  String tokeninfoUrl() {
    return tokeninfoUrl;
  }

  Path decisionLog() {
    return decisionLog;
  }

  /** A decision record: {@code ts_ms} now, the rest added by the check and the decision. */
  static ObjectNode newRecord() {
    ObjectNode rec = JSON.createObjectNode();
    rec.put("ts_ms", System.currentTimeMillis());
    return rec;
  }

  /**
   * Runs {@code check}, answers the broker through {@code answer}, completes {@code rec} with
   * the decision (accept: {@code principal}, {@code accepted_total}; refuse: {@code reason},
   * {@code detail}, {@code refused_total}), logs it and appends it to the decision log.
   */
  <A extends Accepted> void decide(ObjectNode rec, Check<A> check, Answer<A> answer) {
    try {
      A a = check.run(rec);
      long n = accepted.incrementAndGet();
      rec.put("decision", "accept");
      rec.put("principal", "User:" + a.principal);
      rec.put("accepted_total", n);
      answer.accept(a);
      log.info("ACCEPT {}principal=User:{} exp={} token_fp={} accepted_total={}",
          logPrefix, a.principal, a.exp, rec.path("token_fp").asText(), n);
    } catch (Refusal r) {
      long n = refuse(rec, r.reason, r.getMessage(), answer);
      log.warn("REFUSE {}reason={} detail={} refused_total={}", logPrefix, r.reason,
          r.getMessage(), n);
    } catch (RuntimeException e) {
      refuse(rec, "internal_error", e.toString(), answer);
      log.error("REFUSE " + logPrefix + "reason=internal_error", e);
    }
    writeDecision(rec);
  }

  private long refuse(ObjectNode rec, String reason, String detail, Answer<?> answer) {
    long n = refused.incrementAndGet();
    rec.put("decision", "refuse");
    rec.put("reason", reason);
    rec.put("detail", detail);
    rec.put("refused_total", n);
    answer.refuse();
    return n;
  }

  /**
   * Asks tokeninfo about the raw access token; records {@code tokeninfo_status} and, for a
   * token it knows, {@code tokeninfo_email}, {@code tokeninfo_exp} and {@code tokeninfo_scope}.
   */
  TokenInfo tokeninfo(String raw, ObjectNode rec) throws Refusal {
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
    JsonNode info;
    try {
      info = JSON.readTree(resp.body());
    } catch (IOException e) {
      throw new Refusal("tokeninfo_bad_json", e.getMessage());
    }
    String email = info.path("email").asText("");
    long exp;
    try {
      exp = Long.parseLong(info.path("exp").asText(""));
    } catch (NumberFormatException e) {
      throw new Refusal("tokeninfo_bad_exp", "tokeninfo exp=" + info.path("exp"));
    }
    String scope = info.path("scope").asText("");
    rec.put("tokeninfo_email", email);
    rec.put("tokeninfo_exp", exp);
    rec.put("tokeninfo_scope", scope);
    return new TokenInfo(email, exp, scope);
  }

  /** The first 12 hex digits of the SHA-256 of {@code raw}: how decisions name a credential. */
  static String fingerprint(String raw) {
    try {
      byte[] d = MessageDigest.getInstance("SHA-256").digest(raw.getBytes(StandardCharsets.UTF_8));
      return HexFormat.of().formatHex(d, 0, 6);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  // Each validator's decisions go to the file of its own JAAS option, so two validators
  // never interleave writes in one file.
  private synchronized void writeDecision(ObjectNode rec) {
    if (decisionLog == null) {
      return;
    }
    try (Writer w = Files.newBufferedWriter(decisionLog, StandardCharsets.UTF_8,
        StandardOpenOption.CREATE, StandardOpenOption.APPEND)) {
      w.write(JSON.writeValueAsString(rec));
      w.write('\n');
    } catch (IOException e) {
      log.error("cannot append to decision log {}", decisionLog, e);
    }
  }
}
