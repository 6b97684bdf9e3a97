//! Takes Kafka tokens straight from a `KafkaTokenProvider`, for Rust code that sets them on a
//! Kafka client itself.
//!
//! ```sh
//! cargo run --example token_provider
//! ```
//!
//! Prints whose token it is and until when, never the token: it is a credential.

use gcp_kafka_auth_handler::KafkaTokenProvider;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let provider = KafkaTokenProvider::builder().build()?;
    println!("credentials: {}", provider.describe_source());

    // Waits for the first fetch; afterwards every call is answered from the cache, which a
    // background task refreshes before the token expires.
    let token = match provider.token().await {
        Ok(token) => token,
        Err(err) => {
            eprintln!("no Kafka token: {err}");
            std::process::exit(1);
        }
    };
    println!(
        "principal {} (Kafka ACLs: User:{}); expires at {} (unix seconds); {} bytes",
        token.principal(),
        token.principal(),
        token.expires_at_unix(),
        token.expose().len()
    );
    Ok(())
}
