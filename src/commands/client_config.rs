//! `client-config`: prints ready-to-paste Kafka client configuration for the endpoint.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use gcp_kafka_auth_handler::client_config::{Client, ClientConfig, DEFAULT_URL, KafkaVersion};

#[derive(Debug, Args)]
pub struct ClientConfigArgs {
    /// The client to configure.
    #[arg(long, env = "GCP_KAFKA_AUTH_CLIENT")]
    pub client: ClientName,

    /// kafka-clients (Java) version, e.g. 3.3, 3.9.1, 4.0. It decides the handler class and
    /// whether the allowed.urls system property is needed. Without it: configuration for 3.4
    /// and later, 4.x included.
    #[arg(long, env = "GCP_KAFKA_AUTH_KAFKA_VERSION", value_parser = parse_version)]
    pub kafka_version: Option<KafkaVersion>,

    /// The URL clients use: the token endpoint's [default: http://localhost:14293], or with
    /// `--client schema-registry` the schema registry endpoint's [default:
    /// http://localhost:8081].
    #[arg(long, env = "GCP_KAFKA_AUTH_CLIENT_URL")]
    pub url: Option<String>,

    /// With `--client proxy`: the proxy's bootstrap listener (its --listen).
    #[arg(
        long,
        env = "GCP_KAFKA_AUTH_PROXY_ADDRESS",
        default_value = "127.0.0.1:9092"
    )]
    pub proxy_address: String,
}

/// `--client` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ClientName {
    /// Java client properties (kafka-clients, Kafka Connect, Kafka Streams).
    Java,
    /// librdkafka properties (confluent-kafka for Python, Go, .NET, JavaScript; kcat).
    Librdkafka,
    /// Apache Beam Python ReadFromKafka consumer_config.
    BeamPython,
    /// Apache Beam Java KafkaIO consumer config.
    BeamJava,
    /// Kafka command-line tools: client.properties and KAFKA_OPTS.
    KafkaCli,
    /// Any client behind `gcp-kafka-auth-handler proxy`: Java, librdkafka/kcat, sarama,
    /// franz-go, kafka-go, kafkajs.
    Proxy,
    /// Schema registry clients (Python, Go, Node, Java) of `gcp-kafka-auth-handler
    /// schema-registry`: the registry URL only.
    SchemaRegistry,
}

impl From<ClientName> for Client {
    fn from(name: ClientName) -> Self {
        match name {
            ClientName::Java => Client::Java,
            ClientName::Librdkafka => Client::Librdkafka,
            ClientName::BeamPython => Client::BeamPython,
            ClientName::BeamJava => Client::BeamJava,
            ClientName::KafkaCli => Client::KafkaCli,
            // Handled before conversion: they need no token endpoint.
            ClientName::Proxy | ClientName::SchemaRegistry => Client::Java,
        }
    }
}

/// How the configuration for no particular version says to get the kafka-clients 3.1–3.3
/// variant: with the flag (the library names the handler class to set instead).
const VERSION_HINT: &str = "add --kafka-version 3.3.";

fn parse_version(text: &str) -> Result<KafkaVersion, String> {
    text.parse().map_err(|e| format!("{e}"))
}

/// Prints the configuration, or explains on stderr why there is none (exit 2).
pub fn run(args: &ClientConfigArgs) -> ExitCode {
    if let ClientName::Proxy = args.client {
        print!(
            "{}",
            gcp_kafka_auth_handler::proxy::client_config(&args.proxy_address)
        );
        return ExitCode::SUCCESS;
    }
    if let ClientName::SchemaRegistry = args.client {
        let default = format!(
            "http://localhost:{}",
            gcp_kafka_auth_handler::registry::DEFAULT_PORT
        );
        print!(
            "{}",
            gcp_kafka_auth_handler::registry::client_config(
                args.url.as_deref().unwrap_or(&default)
            )
        );
        return ExitCode::SUCCESS;
    }
    let url = args.url.as_deref().unwrap_or(DEFAULT_URL);
    let mut config = ClientConfig::new(args.client.into())
        .with_url(url)
        .with_version_hint(VERSION_HINT);
    if let Some(version) = args.kafka_version {
        config = config.with_kafka_version(version);
    }
    match config.render() {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_hint_names_the_flag() {
        let text = ClientConfig::new(Client::Java)
            .with_version_hint(VERSION_HINT)
            .render()
            .unwrap();
        assert!(
            text.lines().any(|l| l
                == "# kafka-clients 3.1-3.3 need another handler class: add --kafka-version 3.3."),
            "{text}"
        );
    }
}
