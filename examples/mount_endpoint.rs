//! Mounts the token endpoint under `/oauth/token` in an axum application of your own.
//!
//! ```sh
//! cargo run --example mount_endpoint
//! # Kafka clients: sasl.oauthbearer.token.endpoint.url=http://127.0.0.1:8080/oauth/token
//! curl -s http://127.0.0.1:8080/oauth/token/readyz
//! ```
//!
//! Credentials come from Application Default Credentials; `PORT` picks another port.

use gcp_kafka_auth_handler::KafkaTokenProvider;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let provider = KafkaTokenProvider::builder().build()?;
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "my application\n" }))
        .nest("/oauth/token", provider.router());

    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!(
        "token endpoint: http://{}/oauth/token (credentials: {})",
        listener.local_addr()?,
        provider.describe_source()
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
