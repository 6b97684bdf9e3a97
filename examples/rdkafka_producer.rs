//! An rdkafka producer that authenticates to Managed Kafka with Application Default
//! Credentials, no sidecar (feature `rdkafka`).
//!
//! ```sh
//! KAFKA_BOOTSTRAP_SERVERS=bootstrap.CLUSTER.REGION.managedkafka.PROJECT.cloud.goog:9092 \
//! KAFKA_TOPIC=my-topic \
//!     cargo run --features rdkafka --example rdkafka_producer
//! ```
//!
//! Optional: `KAFKA_MESSAGES` (how many records, default 10), `KAFKA_SECURITY_PROTOCOL`
//! (default `SASL_SSL`; the interop suite's local broker uses `SASL_PLAINTEXT`). The last
//! line printed is `RESULT {...}` with what was acknowledged, for scripts. Record `i` has key
//! `k-i` and value `<topic>-i`.

use std::time::Duration;

use gcp_kafka_auth_handler::KafkaTokenProvider;
use gcp_kafka_auth_handler::rdkafka::{ManagedKafkaContext, client_config};
use rdkafka::producer::{FutureProducer, FutureRecord};

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("set {name}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = var("KAFKA_BOOTSTRAP_SERVERS")?;
    let topic = var("KAFKA_TOPIC")?;
    let messages: u32 = std::env::var("KAFKA_MESSAGES")
        .ok()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(10);

    let provider = KafkaTokenProvider::builder().build()?;
    // Fails early, with a message that says what to fix, when the credentials are wrong.
    let token = provider.token().await?;
    eprintln!(
        "authenticating as {} ({})",
        token.principal(),
        provider.describe_source()
    );

    let mut config = client_config(&bootstrap);
    if let Ok(protocol) = std::env::var("KAFKA_SECURITY_PROTOCOL") {
        config.set("security.protocol", protocol);
    }
    let producer: FutureProducer<ManagedKafkaContext> =
        config
            .set("message.timeout.ms", "30000")
            .create_with_context(ManagedKafkaContext::new(provider))?;

    let mut offsets = Vec::new();
    for i in 0..messages {
        let key = format!("k-{i}");
        let payload = format!("{topic}-{i}");
        let record = FutureRecord::to(&topic).key(&key).payload(&payload);
        let delivery = producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(err, _)| err)?;
        offsets.push((delivery.partition, delivery.offset));
    }
    println!(
        "RESULT {}",
        serde_json::json!({
            "acked": offsets.len(),
            "principal": token.principal().as_str(),
            "offsets": offsets,
        })
    );
    Ok(())
}
