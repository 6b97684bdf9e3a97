//! Ready-to-paste Kafka client configuration for the sidecar's token endpoint.
//!
//! The rules come from the clients' own sources (kafka-clients, librdkafka, Beam):
//!
//! - kafka-clients 3.1–3.3 only know the login callback handler under `...oauthbearer.secured.`;
//!   3.4 moved it to `...oauthbearer.` (the old name is deprecated in 3.4, **removed in 4.0**).
//! - kafka-clients 4.0+ refuse every token endpoint URL not listed in the JVM system property
//!   `org.apache.kafka.sasl.oauthbearer.allowed.urls` (exact match); 3.9.1+ check it when set.
//! - librdkafka (1.9.0+) takes the endpoint with `sasl.oauthbearer.method=oidc`.
//! - Beam's `KafkaIO` (Java) and `ReadFromKafka` (Python, which runs the Java KafkaIO) take the
//!   Java properties as consumer configuration.
//!
//! ```
//! use gcp_kafka_auth_handler::client_config::{Client, ClientConfig};
//! let text = ClientConfig::new(Client::Java)
//!     .with_kafka_version("3.3".parse().unwrap())
//!     .render()
//!     .unwrap();
//! assert!(text.contains("oauthbearer.secured.OAuthBearerLoginCallbackHandler"));
//! ```

use std::fmt::{self, Write as _};
use std::str::FromStr;

/// The URL clients are given by default: the sidecar's default port on localhost.
pub const DEFAULT_URL: &str = "http://localhost:14293";

/// The JVM system property kafka-clients 4.0+ check token endpoint URLs against.
pub const ALLOWED_URLS_PROPERTY: &str = "org.apache.kafka.sasl.oauthbearer.allowed.urls";

/// The handler class of kafka-clients 3.4 and later.
pub const HANDLER_CLASS: &str =
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler";

/// The handler class of kafka-clients 3.1–3.3 (removed in 4.0).
pub const SECURED_HANDLER_CLASS: &str =
    "org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerLoginCallbackHandler";

const JAAS: &str = r#"org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required clientId="unused" clientSecret="unused";"#;

const BOOTSTRAP: &str = "bootstrap.CLUSTER_ID.REGION.managedkafka.PROJECT_ID.cloud.goog:9092";

/// Which client the configuration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Client {
    /// The Apache Kafka Java client (kafka-clients), Kafka Connect, Kafka Streams: a
    /// properties file.
    Java,
    /// librdkafka and its bindings (confluent-kafka for Python, Go, .NET, JavaScript; kcat).
    Librdkafka,
    /// Apache Beam Python `ReadFromKafka` / `WriteToKafka`.
    BeamPython,
    /// Apache Beam Java `KafkaIO`.
    BeamJava,
    /// The Kafka command-line tools (`kafka-topics.sh`, `kafka-console-consumer.sh`, ...).
    KafkaCli,
}

impl Client {
    /// Every client, in the order `--help` lists them.
    pub const ALL: [Client; 5] = [
        Client::Java,
        Client::Librdkafka,
        Client::BeamPython,
        Client::BeamJava,
        Client::KafkaCli,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Client::Java => "java",
            Client::Librdkafka => "librdkafka",
            Client::BeamPython => "beam-python",
            Client::BeamJava => "beam-java",
            Client::KafkaCli => "kafka-cli",
        }
    }

    /// Whether the client runs kafka-clients (Java), so the Kafka version matters.
    pub fn runs_kafka_clients(self) -> bool {
        self != Client::Librdkafka
    }
}

/// A kafka-clients version, `MAJOR.MINOR[.PATCH]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KafkaVersion {
    major: u32,
    minor: u32,
    patch: u32,
}

impl KafkaVersion {
    /// `major.minor.patch`.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    const fn at_least(self, major: u32, minor: u32, patch: u32) -> bool {
        self.major > major
            || (self.major == major
                && (self.minor > minor || (self.minor == minor && self.patch >= patch)))
    }
}

impl fmt::Display for KafkaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A version that is not `MAJOR.MINOR[.PATCH]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a Kafka version; write MAJOR.MINOR or MAJOR.MINOR.PATCH, e.g. 3.9 or 4.0.0")]
pub struct ParseVersionError(String);

impl FromStr for KafkaVersion {
    type Err = ParseVersionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ParseVersionError(text.to_owned());
        let parts: Vec<&str> = text.trim().split('.').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(error());
        }
        let number = |s: &str| {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(error());
            }
            s.parse::<u32>().map_err(|_| error())
        };
        Ok(Self {
            major: number(parts[0])?,
            minor: number(parts[1])?,
            patch: parts.get(2).map_or(Ok(0), |p| number(p))?,
        })
    }
}

/// Why no configuration can be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientConfigError {
    /// kafka-clients before 3.1 cannot fetch tokens from a URL.
    #[error(
        "kafka-clients {0} cannot fetch tokens from an OAuth endpoint (that arrived in 3.1, KIP-768); upgrade kafka-clients to 3.4 or later"
    )]
    VersionTooOld(KafkaVersion),
    /// A Kafka version was given for librdkafka.
    #[error(
        "the Kafka version is the kafka-clients (Java) version and does not apply to librdkafka; librdkafka needs 1.9.0 or later with any broker version"
    )]
    VersionNotApplicable,
    /// The URL is empty or contains characters no configuration file can hold.
    #[error(
        "`{0}` is not a usable token endpoint URL; give e.g. http://localhost:14293 (no spaces or quotes)"
    )]
    BadUrl(String),
}

/// What to generate: a client, optionally its kafka-clients version, and the endpoint URL.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    client: Client,
    version: Option<KafkaVersion>,
    url: String,
    version_hint: Option<String>,
}

impl ClientConfig {
    /// Configuration for `client` with the default URL and no particular Kafka version (the
    /// result works with kafka-clients 3.4 and later, 4.x included).
    pub fn new(client: Client) -> Self {
        Self {
            client,
            version: None,
            url: DEFAULT_URL.to_owned(),
            version_hint: None,
        }
    }

    /// For this kafka-clients version.
    pub fn with_kafka_version(mut self, version: KafkaVersion) -> Self {
        self.version = Some(version);
        self
    }

    /// For a sidecar at `url` instead of [`DEFAULT_URL`].
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// How the configuration for no particular Kafka version tells its reader to get the
    /// kafka-clients 3.1–3.3 variant, in the comment `kafka-clients 3.1-3.3 need another
    /// handler class: {hint}` (default: the class to set, [`SECURED_HANDLER_CLASS`]). For a
    /// program that asks for the version with a setting of its own, such as a command-line flag.
    pub fn with_version_hint(mut self, hint: impl Into<String>) -> Self {
        self.version_hint = Some(hint.into());
        self
    }

    /// The configuration text, ready to paste.
    pub fn render(&self) -> Result<String, ClientConfigError> {
        if self.url.is_empty()
            || self
                .url
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\'')
        {
            return Err(ClientConfigError::BadUrl(self.url.clone()));
        }
        if !self.client.runs_kafka_clients() {
            if self.version.is_some() {
                return Err(ClientConfigError::VersionNotApplicable);
            }
            return Ok(librdkafka(&self.url));
        }
        let mut java = JavaRules::new(self.version)?;
        java.version_hint = self.version_hint.clone();
        Ok(match self.client {
            Client::Java => java_properties(&java, &self.url),
            Client::KafkaCli => kafka_cli(&java, &self.url),
            Client::BeamJava => beam_java(&java, &self.url),
            Client::BeamPython => beam_python(&java, &self.url),
            Client::Librdkafka => unreachable!("handled above"),
        })
    }
}

/// What a kafka-clients version needs.
struct JavaRules {
    /// For the comments: "kafka-clients 4.0.0" or "kafka-clients 3.4 and later".
    described: String,
    handler: &'static str,
    allowed_urls: AllowedUrls,
    /// No version was given.
    versionless: bool,
    /// What the version-less configuration says to do for 3.1–3.3 (default: the class).
    version_hint: Option<String>,
}

#[derive(PartialEq)]
enum AllowedUrls {
    /// Before 3.9.1: the property does not exist.
    Unknown,
    /// 3.9.1–3.9.x: checked only when set.
    CheckedWhenSet,
    /// 4.0+ (and the version-less default, which must work there): required.
    Required,
}

impl JavaRules {
    fn new(version: Option<KafkaVersion>) -> Result<Self, ClientConfigError> {
        let Some(v) = version else {
            return Ok(Self {
                described: "kafka-clients 3.4 or later, 4.x included".to_owned(),
                handler: HANDLER_CLASS,
                allowed_urls: AllowedUrls::Required,
                versionless: true,
                version_hint: None,
            });
        };
        if !v.at_least(3, 1, 0) {
            return Err(ClientConfigError::VersionTooOld(v));
        }
        Ok(Self {
            described: format!("kafka-clients {v}"),
            handler: if v.at_least(3, 4, 0) {
                HANDLER_CLASS
            } else {
                SECURED_HANDLER_CLASS
            },
            allowed_urls: if v.at_least(4, 0, 0) {
                AllowedUrls::Required
            } else if v.at_least(3, 9, 1) {
                AllowedUrls::CheckedWhenSet
            } else {
                AllowedUrls::Unknown
            },
            versionless: false,
            version_hint: None,
        })
    }

    /// The SASL properties, in a fixed order (the golden files in tests/golden pin it).
    fn properties<'a>(&'a self, url: &'a str) -> [(&'static str, &'a str); 5] {
        [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "OAUTHBEARER"),
            ("sasl.oauthbearer.token.endpoint.url", url),
            ("sasl.login.callback.handler.class", self.handler),
            ("sasl.jaas.config", JAAS),
        ]
    }

    /// Comment lines (without the comment marker) about the JVM system property.
    fn allowed_urls_note(&self, url: &str, how: &str) -> Vec<String> {
        match self.allowed_urls {
            AllowedUrls::Unknown => vec![],
            AllowedUrls::CheckedWhenSet => vec![
                "kafka-clients 3.9.1 and later check the token endpoint URL against the JVM"
                    .to_owned(),
                format!("system property {ALLOWED_URLS_PROPERTY} when it is set;"),
                format!("if your JVM sets it, it must list {url} exactly."),
            ],
            AllowedUrls::Required => vec![
                "kafka-clients 4.0 and later refuse every token endpoint URL that this JVM"
                    .to_owned(),
                "system property does not list (exact string match, no wildcards):".to_owned(),
                format!("  -D{ALLOWED_URLS_PROPERTY}={url}"),
                how.to_owned(),
            ],
        }
    }

    /// Comment lines for the version-less configuration: how to get the 3.1–3.3 variant.
    fn version_hint(&self) -> Option<String> {
        self.versionless.then(|| {
            let hint = match &self.version_hint {
                Some(hint) => hint.clone(),
                None => format!("set sasl.login.callback.handler.class={SECURED_HANDLER_CLASS}."),
            };
            format!("kafka-clients 3.1-3.3 need another handler class: {hint}")
        })
    }

    fn classpath_note(&self) -> &'static str {
        "kafka-clients leaves jackson-databind (and on 4.x jose4j) to the application's classpath."
    }
}

fn comment(out: &mut String, marker: &str, lines: &[String]) {
    for line in lines {
        let _ = writeln!(out, "{marker} {line}");
    }
}

fn java_tool_options(url: &str) -> String {
    format!("e.g. JAVA_TOOL_OPTIONS=\"-D{ALLOWED_URLS_PROPERTY}={url}\" in the JVM's environment.")
}

fn java_properties(java: &JavaRules, url: &str) -> String {
    let mut out = String::new();
    comment(
        &mut out,
        "#",
        &[
            format!(
                "Kafka Java client configuration ({}) for Google Cloud",
                java.described
            ),
            format!("Managed Service for Apache Kafka through gcp-kafka-auth-handler at {url}."),
        ],
    );
    let _ = writeln!(out, "bootstrap.servers={BOOTSTRAP}");
    for (key, value) in java.properties(url) {
        let _ = writeln!(out, "{key}={value}");
    }
    let mut notes = java.allowed_urls_note(url, &java_tool_options(url));
    notes.push(java.classpath_note().to_owned());
    notes.extend(java.version_hint());
    out.push('\n');
    comment(&mut out, "#", &notes);
    out
}

fn kafka_cli(java: &JavaRules, url: &str) -> String {
    let mut out = String::new();
    comment(
        &mut out,
        "#",
        &[format!(
            "Kafka command-line tools ({}) through gcp-kafka-auth-handler at {url}.",
            java.described
        )],
    );
    out.push_str("cat > client.properties <<'EOF'\n");
    for (key, value) in java.properties(url) {
        let _ = writeln!(out, "{key}={value}");
    }
    out.push_str("EOF\n");
    match java.allowed_urls {
        AllowedUrls::Required => {
            comment(
                &mut out,
                "#",
                &[
                    "kafka-clients 4.0 and later only call token endpoint URLs listed here:"
                        .to_owned(),
                ],
            );
            let _ = writeln!(out, "export KAFKA_OPTS=\"-D{ALLOWED_URLS_PROPERTY}={url}\"");
        }
        AllowedUrls::CheckedWhenSet => comment(
            &mut out,
            "#",
            &[
                format!("kafka-clients 3.9.1+ check {ALLOWED_URLS_PROPERTY} when set;"),
                format!("if KAFKA_OPTS sets it, it must list {url} exactly."),
            ],
        ),
        AllowedUrls::Unknown => {}
    }
    let _ = writeln!(
        out,
        "kafka-topics.sh --bootstrap-server {BOOTSTRAP} --command-config client.properties --list"
    );
    out
}

fn beam_java(java: &JavaRules, url: &str) -> String {
    let mut out = String::new();
    comment(
        &mut out,
        "//",
        &[
            format!(
                "Apache Beam KafkaIO ({}) through gcp-kafka-auth-handler at {url}.",
                java.described
            ),
            "Every worker runs the sidecar (see deploy/dataflow/); use the same map with"
                .to_owned(),
            "KafkaIO.write().withProducerConfigUpdates(...).".to_owned(),
        ],
    );
    out.push_str("Map<String, Object> kafkaAuth = Map.of(\n");
    let properties = java.properties(url);
    for (i, (key, value)) in properties.iter().enumerate() {
        let value = value.replace('\\', "\\\\").replace('"', "\\\"");
        let end = if i + 1 == properties.len() { ");" } else { "," };
        let _ = writeln!(out, "    \"{key}\", \"{value}\"{end}");
    }
    out.push_str("pipeline.apply(KafkaIO.<String, String>read()\n    .withBootstrapServers(\"");
    out.push_str(BOOTSTRAP);
    out.push_str(
        "\")\n    .withTopic(\"my-topic\")\n    .withKeyDeserializer(StringDeserializer.class)\n    .withValueDeserializer(StringDeserializer.class)\n    .withConsumerConfigUpdates(kafkaAuth));\n",
    );
    let mut notes = java.allowed_urls_note(url, &java_tool_options(url));
    notes.push(java.classpath_note().to_owned());
    notes.extend(java.version_hint());
    comment(&mut out, "//", &notes);
    out
}

fn beam_python(java: &JavaRules, url: &str) -> String {
    let mut out = String::new();
    comment(
        &mut out,
        "#",
        &[
            format!("Apache Beam Python ReadFromKafka through gcp-kafka-auth-handler at {url}."),
            format!(
                "ReadFromKafka runs the Java KafkaIO; this is for {} in its Java SDK harness.",
                java.described
            ),
            "The sidecar runs in the workers' Java SDK container (see deploy/dataflow/)."
                .to_owned(),
        ],
    );
    out.push_str("from apache_beam.io.kafka import ReadFromKafka\n\n");
    out.push_str("consumer_config = {\n");
    let _ = writeln!(out, "    \"bootstrap.servers\": \"{BOOTSTRAP}\",");
    for (key, value) in java.properties(url) {
        // The JAAS line holds double quotes: Python's single quotes keep it readable.
        if value.contains('"') {
            let _ = writeln!(out, "    \"{key}\": '{value}',");
        } else {
            let _ = writeln!(out, "    \"{key}\": \"{value}\",");
        }
    }
    out.push_str("}\n\n");
    out.push_str(
        "messages = pipeline | ReadFromKafka(consumer_config=consumer_config, topics=[\"my-topic\"])\n",
    );
    let mut notes = java.allowed_urls_note(
        url,
        &format!(
            "deploy/dataflow/Dockerfile sets it: ENV JAVA_TOOL_OPTIONS=\"-D{ALLOWED_URLS_PROPERTY}={url}\"."
        ),
    );
    notes.extend(java.version_hint());
    comment(&mut out, "#", &notes);
    out
}

fn librdkafka(url: &str) -> String {
    let mut out = String::new();
    comment(
        &mut out,
        "#",
        &[
            format!("librdkafka 1.9.0 or later through gcp-kafka-auth-handler at {url}"),
            "(confluent-kafka for Python, Go, .NET and JavaScript; kcat -F this-file).".to_owned(),
        ],
    );
    let _ = writeln!(out, "bootstrap.servers={BOOTSTRAP}");
    for (key, value) in [
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanism", "OAUTHBEARER"),
        ("sasl.oauthbearer.method", "oidc"),
        ("sasl.oauthbearer.token.endpoint.url", url),
        ("sasl.oauthbearer.client.id", "unused"),
        ("sasl.oauthbearer.client.secret", "unused"),
    ] {
        let _ = writeln!(out, "{key}={value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> KafkaVersion {
        text.parse().unwrap()
    }

    #[test]
    fn versions_parse_with_or_without_patch_and_compare_numerically() {
        assert_eq!(v("3.9"), KafkaVersion::new(3, 9, 0));
        assert_eq!(v("4.0.1"), KafkaVersion::new(4, 0, 1));
        assert!(v("3.10") > v("3.9.1"));
        for bad in ["4", "4.x", "4.0.0.1", "", "v4.0", "4..0", "-1.0"] {
            assert_eq!(
                bad.parse::<KafkaVersion>(),
                Err(ParseVersionError(bad.to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_version_hint_names_the_class_unless_the_program_words_it() {
        let hint_line = |config: ClientConfig| {
            config
                .render()
                .unwrap()
                .lines()
                .find(|l| l.contains("3.1-3.3"))
                .map(str::to_owned)
        };
        assert_eq!(
            hint_line(ClientConfig::new(Client::Java)).as_deref(),
            Some(
                "# kafka-clients 3.1-3.3 need another handler class: set sasl.login.callback.handler.class=org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerLoginCallbackHandler."
            )
        );
        assert_eq!(
            hint_line(ClientConfig::new(Client::BeamPython).with_version_hint("add --v 3.3."))
                .as_deref(),
            Some("# kafka-clients 3.1-3.3 need another handler class: add --v 3.3.")
        );
        // A configuration for a version has no hint.
        let for_version = ClientConfig::new(Client::Java)
            .with_kafka_version(v("3.9"))
            .with_version_hint("add --v 3.3.");
        assert_eq!(hint_line(for_version), None);
    }

    #[test]
    fn handler_class_follows_the_version() {
        for (version, handler) in [
            ("3.1", SECURED_HANDLER_CLASS),
            ("3.3.2", SECURED_HANDLER_CLASS),
            ("3.4", HANDLER_CLASS),
            ("3.9.1", HANDLER_CLASS),
            ("4.0", HANDLER_CLASS),
            ("4.2", HANDLER_CLASS),
        ] {
            let rules = JavaRules::new(Some(v(version))).unwrap();
            assert_eq!(rules.handler, handler, "{version}");
        }
        assert!(matches!(
            JavaRules::new(Some(v("3.0.2"))),
            Err(ClientConfigError::VersionTooOld(_))
        ));
    }

    #[test]
    fn allowed_urls_is_required_from_4_0_and_mentioned_from_3_9_1() {
        let rule = |s: &str| JavaRules::new(Some(v(s))).unwrap().allowed_urls;
        assert!(rule("3.9.0") == AllowedUrls::Unknown);
        assert!(rule("3.9.1") == AllowedUrls::CheckedWhenSet);
        assert!(rule("4.0.0") == AllowedUrls::Required);
        assert!(JavaRules::new(None).unwrap().allowed_urls == AllowedUrls::Required);
    }

    #[test]
    fn urls_that_would_break_the_file_are_refused() {
        for bad in ["", "http://x y", "http://x\"", "http://x'"] {
            assert_eq!(
                ClientConfig::new(Client::Java).with_url(bad).render(),
                Err(ClientConfigError::BadUrl(bad.to_owned()))
            );
        }
    }
}
