//! Starting, stopping, and the `fake-google` binary.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use fake_google::FakeGoogle;
use serde_json::{Value, json};

use crate::common::{assertion_for, client, exchange, keys, unpack};

#[tokio::test]
async fn dropping_the_last_handle_stops_the_server() {
    let google = FakeGoogle::start().await;
    let clone = google.clone();
    let url = format!("{}/_fake/stats", google.base_url());
    drop(google);
    // A clone keeps it alive.
    let fresh = || {
        reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    assert_eq!(
        fresh().get(&url).send().await.unwrap().status().as_u16(),
        200
    );
    drop(clone);
    let mut refused = false;
    for _ in 0..50 {
        if fresh().get(&url).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "server still answering after the last handle was dropped"
    );
}

#[tokio::test]
async fn start_on_an_unspecified_address_advertises_loopback() {
    let google = FakeGoogle::start_on(SocketAddr::from(([0, 0, 0, 0], 0)))
        .await
        .unwrap();
    assert!(
        google.base_url().starts_with("http://127.0.0.1:"),
        "{}",
        google.base_url()
    );
    let response = client()
        .get(format!("{}/_fake/stats", google.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn start_on_a_busy_port_is_an_error() {
    let google = FakeGoogle::start().await;
    let busy: SocketAddr = google.metadata_host().parse().unwrap();
    let error = FakeGoogle::start_on(busy).await.err().expect("port in use");
    assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
}

#[tokio::test]
async fn binary_prints_its_urls_writes_credentials_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("fake-google-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_path = dir.join("sa.json");
    let user_path = dir.join("adc.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-google"))
        .args(["--token-lifetime-secs", "900"])
        .args([
            "--metadata-email",
            "bin@test-project.iam.gserviceaccount.com",
        ])
        .arg("--write-service-account-key")
        .arg(&key_path)
        .args([
            "--service-account-email",
            "robot@test-project.iam.gserviceaccount.com",
        ])
        .arg("--write-authorized-user")
        .arg(&user_path)
        .args(["--user-email", "dev@example.com"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn fake-google");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let urls: Value = serde_json::from_str(&line).expect("one JSON line");
    assert_eq!(
        keys(&urls),
        ["base_url", "metadata_host", "token_uri", "tokeninfo_url"]
    );
    let base = urls["base_url"].as_str().unwrap().to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let port = base.rsplit(':').next().unwrap();
    assert_ne!(port, "0");
    assert_eq!(
        urls,
        json!({
            "base_url": base,
            "metadata_host": format!("127.0.0.1:{port}"),
            "token_uri": format!("{base}/token"),
            "tokeninfo_url": format!("{base}/tokeninfo"),
        })
    );

    // The key file works against the running process, with the configured lifetime.
    let key: Value = serde_json::from_slice(&std::fs::read(&key_path).unwrap()).unwrap();
    assert_eq!(key["token_uri"], urls["token_uri"]);
    let response = client()
        .post(key["token_uri"].as_str().unwrap())
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion_for(&key).as_str()),
        ])
        .send()
        .await
        .unwrap();
    let (status, _, body) = unpack(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], json!(900));

    let user: Value = serde_json::from_slice(&std::fs::read(&user_path).unwrap()).unwrap();
    assert_eq!(user["type"], "authorized_user");

    let email = client()
        .get(format!(
            "{base}/computeMetadata/v1/instance/service-accounts/default/email"
        ))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(email, "bin@test-project.iam.gserviceaccount.com");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn in_process_and_out_of_process_helpers_agree() {
    // The same key file shape from the library and the control plane.
    let google = FakeGoogle::start().await;
    let from_lib = google.service_account_key_json("a@test-project.iam.gserviceaccount.com");
    let response = client()
        .post(format!("{}/_fake/service-account-key", google.base_url()))
        .body(r#"{"email":"a@test-project.iam.gserviceaccount.com"}"#)
        .send()
        .await
        .unwrap();
    let (_, _, from_http) = unpack(response).await;
    assert_eq!(keys(&from_lib), keys(&from_http));
    let mut a = from_lib.clone();
    let mut b = from_http.clone();
    a["private_key_id"] = json!(null);
    b["private_key_id"] = json!(null);
    assert_eq!(a, b);
    for key in [&from_lib, &from_http] {
        assert_eq!(exchange(&google, &assertion_for(key)).await.0, 200);
    }
}
