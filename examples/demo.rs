//! Watch the sidecar work without a Google account: `cargo run --example demo`.
//!
//! Starts the loopback fake of Google's endpoints that the tests use (fake-google, a
//! dev-dependency, so it never ships in the release binary), serves the token endpoint against
//! it, asks for a token the way the Apache Kafka Java client does, takes the answer apart, and
//! prints the client configuration to use against real Google.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gcp_kafka_auth_handler::client_config::{Client, ClientConfig};
use gcp_kafka_auth_handler::{Env, KafkaTokenProvider, server};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let google = fake_google::FakeGoogle::start().await;
    println!("== 1. A fake Google on loopback: {}", google.base_url());
    println!(
        "   It plays the metadata server of a VM whose service account is {}.\n",
        fake_google::DEFAULT_METADATA_EMAIL
    );

    // The sidecar finds credentials the way it would on a Google Cloud VM: no key file, no
    // gcloud login, so Application Default Credentials end at the metadata server, here the
    // fake's. An empty HOME keeps your own gcloud login out of the demo.
    let home = tempfile::tempdir()?;
    let provider = KafkaTokenProvider::builder()
        .with_env(Env::from_pairs([
            ("GCE_METADATA_HOST", google.metadata_host()),
            ("GCP_KAFKA_AUTH_TOKENINFO_URL", google.tokeninfo_url()),
            ("HOME", home.path().display().to_string()),
        ]))
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(
        vec![listener],
        provider.router(),
        server::Limits::default(),
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    println!("== 2. The sidecar's token endpoint: {url}\n");

    println!("== 3. A token request, as kafka-clients sends it:");
    println!("   POST {url}/  Authorization: Basic dW51c2VkOnVudXNlZA==  (unused:unused)");
    println!("   grant_type=client_credentials&scope=kafka\n");
    let client = reqwest::Client::builder().no_proxy().build()?;
    let response = client
        .post(&url)
        .header("Accept", "application/json")
        .header("Cache-Control", "no-cache")
        .header("Authorization", "Basic dW51c2VkOnVudXNlZA==")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=kafka")
        .send()
        .await?;
    println!("   -> {}", response.status());
    for name in ["content-type", "cache-control", "pragma"] {
        if let Some(value) = response.headers().get(name) {
            println!("      {name}: {}", value.to_str()?);
        }
    }
    let body: serde_json::Value = response.json().await?;
    let token = body["access_token"].as_str().ok_or("no access_token")?;
    println!(
        "      {{\"access_token\": \"{}...\", \"token_type\": {}, \"expires_in\": {}}}\n",
        &token[..24.min(token.len())],
        body["token_type"],
        body["expires_in"]
    );

    println!("== 4. The token, taken apart (base64url header . claims . Google access token):");
    let parts: Vec<&str> = token.split('.').collect();
    let decode = |part: &str| -> Result<String, Box<dyn std::error::Error>> {
        Ok(String::from_utf8(URL_SAFE_NO_PAD.decode(part)?)?)
    };
    println!("   header: {}", decode(parts[0])?);
    println!("   claims: {}", decode(parts[1])?);
    let raw = decode(parts[2])?;
    println!("   Google access token: {}...", &raw[..12.min(raw.len())]);
    if let Some(issued) = google.lookup(&raw) {
        println!(
            "   (the fake issued it for {}; it expires at {})",
            issued.principal, issued.expires_at_unix
        );
    }
    println!(
        "   Managed Kafka checks the access token with Google and the principal (`sub`) against\n   IAM: it needs roles/managedkafka.client.\n"
    );

    println!("== 5. Against real Google: run the sidecar next to your client");
    println!("   cargo run --release -- serve     # or the container, see README.md");
    println!(
        "   and give the client this configuration (more: `gcp-kafka-auth-handler client-config --help`):\n"
    );
    for line in ClientConfig::new(Client::Java).render()?.lines() {
        if line.is_empty() {
            println!();
        } else {
            println!("   {line}");
        }
    }

    let _ = stop.send(());
    server.await??;
    Ok(())
}
