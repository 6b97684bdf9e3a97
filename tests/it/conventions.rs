//! The proxy as users of Google's own auth proxies expect it, through the binary: cluster
//! names looked up with fake-google's Managed Kafka API (and each of its errors), the
//! probes, `wait`, `/quitquitquit`, the SIGTERM delays and exit codes, the credential flags,
//! `--config` precedence and `--forward-proxy` (SOCKS5 and HTTP CONNECT servers in this
//! process), all over real TCP on loopback against the scripted fake broker.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_google::{FakeGoogle, ManagedKafkaFault};
use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::proxy_support::{Client, FakeBroker, Script};
use crate::support::{SidecarEnv, command, run};

const CLUSTER: &str = "projects/test-project/locations/us-central1/clusters/orders";
const BOOTSTRAP_HOST: &str = "bootstrap.orders.kafka.invalid";

/// Ports below the ephemeral range, distinct per proxy in this process (each takes a block of
/// 300: two clusters' bootstrap ports and broker bases, plus the health and admin ports).
fn ports() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let slot = NEXT.fetch_add(1, Ordering::Relaxed);
    10_000 + ((std::process::id() as u16 % 20) * 1000 + slot * 300) % 9_600
}

/// A spawned `proxy`, killed on drop.
struct Proc {
    child: Option<Child>,
    logs: Arc<Mutex<Vec<String>>>,
    /// Bootstrap port of the first cluster; its broker base is + 1, health + 250, admin + 251.
    base: u16,
}

impl Proc {
    fn spawn(env: &SidecarEnv, base: u16, args: &[&str]) -> Proc {
        let listen = format!("127.0.0.1:{base}");
        let brokers = (base + 1).to_string();
        let http = (base + 250).to_string();
        let admin = (base + 251).to_string();
        let mut all = vec![
            "proxy",
            "--log-format",
            "json",
            "--listen",
            &listen,
            "--broker-port-base",
            &brokers,
            "--http-port",
            &http,
            "--admin-port",
            &admin,
            "--upstream-tls=false",
        ];
        all.extend_from_slice(args);
        let mut command = command(env, &all);
        command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info");
        let mut child = command.spawn().expect("start the proxy");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Proc {
            child: Some(child),
            logs,
            base,
        }
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.base + 250)
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = reqwest::Client::new()
            .get(self.http_url(path))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.unwrap_or_default()))
    }

    /// Waits (at most 20 s) until `path` answers `status`.
    async fn wait_for(&self, path: &str, status: u16) -> String {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Some((got, body)) = self.get(path).await
                && got == status
            {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{path} never answered {status}; logs:\n{}", self.logs());
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap();
    }

    /// Waits (at most `limit`) for the exit.
    async fn exit(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "the proxy did not exit within {limit:?}; logs:\n{}",
            self.logs()
        );
    }

    async fn wait_log(&self, needle: &str) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if self.logs().contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no log line with {needle:?}; logs:\n{}", self.logs());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A fake broker whose node 0 is `broker-0.kafka.invalid` at its own address.
async fn broker() -> FakeBroker {
    let broker = FakeBroker::start(Script::default()).await;
    let port = i32::from(broker.addr.port());
    broker.set(|s| s.brokers = vec![(0, "broker-0.kafka.invalid".to_owned(), port)]);
    broker
}

fn resolve_flag(broker: &FakeBroker) -> String {
    let _ = broker;
    format!("--resolve={BOOTSTRAP_HOST}=127.0.0.1,broker-0.kafka.invalid=127.0.0.1")
}

/// One Metadata round trip through `addr`: the brokers as the client sees them.
async fn metadata_brokers(addr: SocketAddr) -> Vec<(i32, String, i32)> {
    let mut client = Client::connect(addr).await;
    client
        .send(&MetadataRequest::default().with_topics(Some(vec![])), 9)
        .await;
    let (_, metadata) = client.recv::<MetadataRequest>(9).await;
    metadata
        .brokers
        .iter()
        .map(|b| (b.node_id.0, b.host.to_string(), b.port))
        .collect()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_names_are_looked_up_with_the_quota_project_and_each_gets_its_ports() {
    let google = FakeGoogle::start().await;
    let broker = broker().await;
    let address = format!("{BOOTSTRAP_HOST}:{}", broker.addr.port());
    google.add_managed_kafka_cluster(CLUSTER, &address);
    let second = "projects/test-project/locations/europe-west1/clusters/audit";
    google.add_managed_kafka_cluster(second, &address);
    let env = SidecarEnv::new(&google);
    let base = ports();
    let endpoint = google.base_url();
    let mut proxy = Proc::spawn(
        &env,
        base,
        &[
            CLUSTER,
            second,
            "--managed-kafka-endpoint",
            &endpoint,
            "--quota-project",
            "billing-project",
            &resolve_flag(&broker),
        ],
    );
    let started = proxy.wait_for("/startup", 200).await;
    assert!(started.contains("\"status\":\"started\""), "{started}");
    let ready = proxy.wait_for("/readiness", 200).await;
    assert!(
        ready.contains(&format!(
            "{CLUSTER}: bootstrap Metadata round trip succeeded; 1 brokers"
        )),
        "{ready}"
    );
    assert_eq!(proxy.wait_for("/liveness", 200).await, r#"{"status":"ok"}"#);

    let gets: Vec<_> = google
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/clusters/"))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].method, "GET");
    assert_eq!(gets[0].path, format!("/v1/{CLUSTER}"));
    assert_eq!(gets[1].path, format!("/v1/{second}"));
    assert_eq!(
        gets[0].header("x-goog-user-project"),
        Some("billing-project")
    );
    let bearer = gets[0].header("authorization").unwrap();
    let token = bearer.strip_prefix("Bearer ").unwrap();
    assert_eq!(
        google.lookup(token).unwrap().principal,
        fake_google::DEFAULT_METADATA_EMAIL
    );

    // Cluster 0 on the --listen port and broker base, cluster 1 a block of 100 higher.
    assert_eq!(
        metadata_brokers(loopback(base)).await,
        [(0, "127.0.0.1".to_owned(), i32::from(base + 1))]
    );
    assert_eq!(
        metadata_brokers(loopback(base + 100)).await,
        [(0, "127.0.0.1".to_owned(), i32::from(base + 101))]
    );
    let (_, metrics) = proxy.get("/metrics").await.unwrap();
    assert!(
        metrics.contains(&format!(
            "gcp_kafka_auth_proxy_connections_accepted_total{{cluster=\"{second}\"}} 1"
        )),
        "{metrics}"
    );
    assert_eq!(
        metrics
            .matches("# TYPE gcp_kafka_auth_proxy_connections_accepted counter")
            .count(),
        1,
        "{metrics}"
    );

    proxy.signal("-TERM");
    assert_eq!(proxy.exit(Duration::from_secs(20)).await.code(), Some(143));
}

/// Runs the proxy for `CLUSTER` against `google` to its exit; returns (code, stderr).
fn failing_lookup(google: &FakeGoogle, env: &SidecarEnv, extra: &[&str]) -> (i32, String) {
    let base = ports();
    let listen = format!("127.0.0.1:{base}");
    let http = (base + 250).to_string();
    let endpoint = google.base_url();
    let mut args = vec![
        "proxy",
        CLUSTER,
        "--managed-kafka-endpoint",
        &endpoint,
        "--listen",
        &listen,
        "--http-port",
        &http,
    ];
    args.extend_from_slice(extra);
    let (code, _, stderr) = run(env, &args);
    (code, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_api_error_names_its_cause_and_fix() {
    let google = FakeGoogle::start().await;
    let env = SidecarEnv::new(&google);

    let (code, stderr) = failing_lookup(&google, &env, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("error: Managed Kafka cluster {CLUSTER} not found (404 from {}/v1/{CLUSTER}): check the project, the region and the cluster id; `gcloud managed-kafka clusters list --project=test-project --location=us-central1` lists the clusters there", google.base_url())),
        "{stderr}"
    );

    google.add_managed_kafka_cluster(CLUSTER, "b.kafka.invalid:9092");
    google.set_managed_kafka_fault(Some(ManagedKafkaFault::PermissionDenied));
    let (code, stderr) = failing_lookup(&google, &env, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("permission denied reading Managed Kafka cluster {CLUSTER} (403 from {}/v1/{CLUSTER}): {} needs the managedkafka.clusters.get permission on it, which the role roles/managedkafka.viewer grants", google.base_url(), fake_google::DEFAULT_METADATA_EMAIL)),
        "{stderr}"
    );
    assert!(
        stderr.contains("Google said: Permission 'managedkafka.clusters.get' denied on resource"),
        "{stderr}"
    );

    google.set_managed_kafka_fault(Some(ManagedKafkaFault::ServiceDisabled));
    let (code, stderr) = failing_lookup(&google, &env, &["--quota-project", "billing-project"]);
    assert_eq!(code, 2, "{stderr}");
    let number = fake_google::numeric_id("billing-project");
    assert!(
        stderr.contains(&format!("the Managed Kafka API (managedkafka.googleapis.com) is disabled in project {number}: enable it with `gcloud services enable managedkafka.googleapis.com --project={number}` or at https://console.developers.google.com/apis/api/managedkafka.googleapis.com/overview?project={number}")),
        "{stderr}"
    );

    google.set_managed_kafka_fault(None);
    let (code, _, stderr) = run(&env, &["proxy", "projects/p/clusters/c"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("`projects/p/clusters/c` is not a Managed Kafka cluster name (it must have six parts separated by `/`): write projects/PROJECT/locations/REGION/clusters/CLUSTER"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&env, &["proxy", &format!("{CLUSTER}?prot=1")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`prot` in"), "{stderr}");
    let (code, _, stderr) = run(&env, &["proxy", CLUSTER, "--bootstrap-server", "h:9092"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_flags_choose_whose_token_calls_the_api() {
    let google = FakeGoogle::start().await;
    google.add_managed_kafka_cluster(CLUSTER, "b.kafka.invalid:9092");
    google.set_managed_kafka_fault(Some(ManagedKafkaFault::PermissionDenied));
    let denied = |who: &str| format!("(403 from {}/v1/{CLUSTER}): {who} needs", google.base_url());

    // --credentials-file wins over the metadata server ADC would pick.
    let env = SidecarEnv::new(&google).set("GCP_KAFKA_AUTH_IAM_CREDENTIALS_URL", google.base_url());
    let robot = "robot@test-project.iam.gserviceaccount.com";
    let key = env.write_file("key.json", &google.service_account_key_json(robot));
    let (code, stderr) = failing_lookup(
        &google,
        &env,
        &["--credentials-file", key.to_str().unwrap()],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains(&denied(robot)), "{stderr}");

    // --impersonate-service-account: the chain's last entry is whose token it is.
    let target = "target@test-project.iam.gserviceaccount.com";
    let chain = format!("delegate@test-project.iam.gserviceaccount.com,{target}");
    let (code, stderr) = failing_lookup(&google, &env, &["--impersonate-service-account", &chain]);
    assert_eq!(code, 2);
    assert!(stderr.contains(&denied(target)), "{stderr}");

    // --token: used as is, with no other credentials reachable.
    let token = reqwest::Client::new()
        .get(format!(
            "{}/computeMetadata/v1/instance/service-accounts/default/token",
            google.base_url()
        ))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let env = SidecarEnv::new(&google).set("GCE_METADATA_HOST", "127.0.0.1:9");
    let (code, stderr) = failing_lookup(&google, &env, &["--token", &token]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&denied(fake_google::DEFAULT_METADATA_EMAIL)),
        "{stderr}"
    );
    assert!(!stderr.contains(&token), "the token leaked: {stderr}");

    let (code, stderr) = failing_lookup(
        &google,
        &env,
        &["--credentials-file", "/nonexistent/key.json"],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--credentials-file /nonexistent/key.json (GCP_KAFKA_AUTH_CREDENTIALS_FILE) cannot be read"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_exits_zero_once_ready_and_one_after_its_timeout() {
    let google = FakeGoogle::start().await;
    let broker = broker().await;
    let env = SidecarEnv::new(&google);
    let base = ports();
    let http = (base + 250).to_string();

    let (code, _, stderr) = run(&env, &["wait", "--http-port", &http, "--timeout", "1s"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "http://127.0.0.1:{http}/readyz: not ready after 1s: last answer no answer ("
        )),
        "{stderr}"
    );

    let bootstrap = format!("--bootstrap-server={BOOTSTRAP_HOST}:{}", broker.addr.port());
    let proxy = Proc::spawn(&env, base, &[&bootstrap, &resolve_flag(&broker)]);
    let (code, stdout, stderr) = run(&env, &["wait", "--http-port", &http, "--timeout", "20s"]);
    assert_eq!(code, 0, "{stderr}\n{}", proxy.logs());
    assert_eq!(
        stdout,
        format!(
            "http://127.0.0.1:{http}/readyz: 200 {{\"detail\":\"bootstrap Metadata round trip succeeded; 1 brokers\",\"status\":\"ready\"}}\n"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitquitquit_is_opt_in_and_exits_zero() {
    let google = FakeGoogle::start().await;
    let env = SidecarEnv::new(&google);
    let base = ports();
    let admin = format!("http://127.0.0.1:{}/quitquitquit", base + 251);

    let plain = Proc::spawn(&env, base, &["--bootstrap-server=127.0.0.1:9"]);
    plain.wait_for("/liveness", 200).await;
    let refused = reqwest::Client::new()
        .post(&admin)
        .send()
        .await
        .unwrap_err();
    assert!(refused.is_connect(), "{refused}");
    drop(plain);

    let base = ports();
    let admin = format!("http://127.0.0.1:{}/quitquitquit", base + 251);
    let mut proxy = Proc::spawn(
        &env,
        base,
        &["--bootstrap-server=127.0.0.1:9", "--quitquitquit"],
    );
    proxy.wait_for("/liveness", 200).await;
    let get = reqwest::Client::new().get(&admin).send().await.unwrap();
    assert_eq!(get.status(), 405);
    // Without the custom header (which a web page cannot send cross-origin without a
    // preflight): refused, with the command that works.
    let bare = reqwest::Client::new().post(&admin).send().await.unwrap();
    assert_eq!(bare.status(), 400);
    let text = bare.text().await.unwrap();
    assert!(text.contains("-H 'X-Quitquitquit: 1'"), "{text}");
    // The browser-style request that stopped the proxy before: a foreign Host, Origin and
    // Sec-Fetch-* headers and a text/plain body (a "simple" cross-site POST, no preflight).
    let browser = crate::support::raw_request(
        SocketAddr::from(([127, 0, 0, 1], base + 251)),
        b"POST /quitquitquit HTTP/1.1\r\nHost: evil.example\r\nOrigin: http://evil.example\r\nSec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: no-cors\r\nContent-Type: text/plain\r\nX-Quitquitquit: 1\r\nContent-Length: 2\r\n\r\nhi",
    )
    .await;
    assert_eq!(browser.status, 403, "{:?}", browser.body);
    assert_eq!(browser.header("x-content-type-options"), Some("nosniff"));
    let quit = reqwest::Client::new()
        .post(&admin)
        .header("X-Quitquitquit", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(quit.status(), 200);
    assert_eq!(quit.text().await.unwrap(), r#"{"status":"stopping"}"#);
    assert_eq!(proxy.exit(Duration::from_secs(20)).await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_accepting_for_the_min_delay_then_drains_and_exits_as_told() {
    let google = FakeGoogle::start().await;
    let broker = broker().await;
    let env = SidecarEnv::new(&google);
    let base = ports();
    let bootstrap = format!("--bootstrap-server={BOOTSTRAP_HOST}:{}", broker.addr.port());
    let mut proxy = Proc::spawn(
        &env,
        base,
        &[
            &bootstrap,
            &resolve_flag(&broker),
            "--min-sigterm-delay=3s",
            "--max-sigterm-delay=5s",
            "--exit-zero-on-sigterm",
        ],
    );
    proxy.wait_for("/readiness", 200).await;
    // A connection open before SIGTERM.
    let mut open = Client::connect(loopback(base)).await;
    open.send(&ApiVersionsRequest::default(), 3).await;
    let _ = open.recv::<ApiVersionsRequest>(3).await;

    proxy.signal("-TERM");
    proxy
        .wait_log("still accepting connections for --min-sigterm-delay 3s")
        .await;
    // New connections are still served during the minimum delay.
    assert_eq!(
        metadata_brokers(loopback(base)).await,
        [(0, "127.0.0.1".to_owned(), i32::from(base + 1))]
    );
    // Then the open connection is drained and closed, and the process exits 0.
    assert!(open.closed().await);
    assert_eq!(proxy.exit(Duration::from_secs(20)).await.code(), Some(0));
    assert!(
        TcpListener::bind(loopback(base)).await.is_ok(),
        "the listener was released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_beat_environment_which_beats_the_config_file() {
    let google = FakeGoogle::start().await;
    let base = ports();
    let (file_port, env_port, flag_port) = (base + 260, base + 261, base + 262);
    let env = SidecarEnv::new(&google);
    let config = env.home().join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "bootstrap-server = [\"127.0.0.1:9\"]\nlisten = \"127.0.0.1:{}\"\nhttp_port = {file_port}\nupstream-tls = false\nexit-zero-on-sigterm = true\n",
            base + 270
        ),
    )
    .unwrap();
    let config_flag = format!("--config={}", config.display());
    let answers = |port: u16| async move {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if reqwest::get(format!("http://127.0.0.1:{port}/liveness"))
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    };
    let spawn = |env: &SidecarEnv, extra: &[&str]| {
        let mut args = vec!["proxy", config_flag.as_str(), "--log-format", "json"];
        args.extend_from_slice(extra);
        let mut command = command(env, &args);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        command.spawn().unwrap()
    };
    let stop = |mut child: Child| {
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap()
    };

    // The file alone: its port, and its exit-zero-on-sigterm.
    let child = spawn(&env, &[]);
    assert!(answers(file_port).await);
    assert_eq!(stop(child).code(), Some(0));

    // The environment beats the file.
    let with_env = SidecarEnv::new(&google).set("GCP_KAFKA_AUTH_HTTP_PORT", env_port.to_string());
    let child = spawn(&with_env, &[]);
    assert!(answers(env_port).await);
    stop(child);

    // The flag beats both.
    let port = flag_port.to_string();
    let child = spawn(&with_env, &["--http-port", &port]);
    assert!(answers(flag_port).await);
    stop(child);

    std::fs::write(
        &config,
        "bootstrap-server = [\"127.0.0.1:9\"]\nhttp-prot = 1\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&env, &["proxy", &config_flag]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--config {}: unknown key `http-prot`; `proxy` takes: ",
            config.display()
        )),
        "{stderr}"
    );
}

/// A SOCKS5 (no auth) or HTTP CONNECT proxy that dials `broker` for any target; returns its
/// address and the targets it was asked for.
async fn forward_proxy(socks: bool, broker: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let targets = Arc::new(Mutex::new(Vec::new()));
    let seen = targets.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let target = if socks {
                    let mut hello = [0u8; 3];
                    client.read_exact(&mut hello).await.unwrap();
                    assert_eq!(hello, [5, 1, 0]);
                    client.write_all(&[5, 0]).await.unwrap();
                    let mut head = [0u8; 5];
                    client.read_exact(&mut head).await.unwrap();
                    assert_eq!(&head[..4], &[5, 1, 0, 3], "a CONNECT to a domain name");
                    let mut name = vec![0u8; usize::from(head[4]) + 2];
                    client.read_exact(&mut name).await.unwrap();
                    let port = u16::from_be_bytes([name[name.len() - 2], name[name.len() - 1]]);
                    let host = String::from_utf8(name[..name.len() - 2].to_vec()).unwrap();
                    client
                        .write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])
                        .await
                        .unwrap();
                    format!("{host}:{port}")
                } else {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        head.push(client.read_u8().await.unwrap());
                    }
                    let head = String::from_utf8(head).unwrap();
                    client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .unwrap();
                    head.lines().next().unwrap().to_owned()
                };
                seen.lock().unwrap().push(target);
                // not a client of the proxy: the forward proxy's own leg to the broker, which
                // carries the broker's real names by design.
                let mut upstream = tokio::net::TcpStream::connect(broker).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, targets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_proxies_get_the_broker_names_unresolved() {
    let google = FakeGoogle::start().await;
    let broker = broker().await;
    let env = SidecarEnv::new(&google);
    for socks in [true, false] {
        let (addr, targets) = forward_proxy(socks, broker.addr).await;
        let url = format!("{}://{addr}", if socks { "socks5" } else { "http" });
        let base = ports();
        let bootstrap = format!("--bootstrap-server={BOOTSTRAP_HOST}:9092");
        let proxy = Proc::spawn(&env, base, &[&bootstrap, "--forward-proxy", &url]);
        proxy.wait_for("/readiness", 200).await;
        assert_eq!(
            metadata_brokers(loopback(base)).await,
            [(0, "127.0.0.1".to_owned(), i32::from(base + 1))]
        );
        let first = targets.lock().unwrap()[0].clone();
        if socks {
            assert_eq!(first, format!("{BOOTSTRAP_HOST}:9092"));
        } else {
            assert_eq!(first, format!("CONNECT {BOOTSTRAP_HOST}:9092 HTTP/1.1"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_port_refuses_browsers_and_foreign_hosts() {
    let google = FakeGoogle::start().await;
    let env = SidecarEnv::new(&google);
    let base = ports();
    let proxy = Proc::spawn(&env, base, &["--bootstrap-server=127.0.0.1:9"]);
    proxy.wait_for("/liveness", 200).await;
    let health = SocketAddr::from(([127, 0, 0, 1], base + 250));
    for (request, status) in [
        (
            &b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"[..],
            200,
        ),
        // DNS rebinding: a page's own name in Host.
        (b"GET /metrics HTTP/1.1\r\nHost: evil.example\r\n\r\n", 403),
        (
            b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nSec-Fetch-Site: cross-site\r\n\r\n",
            403,
        ),
        (
            b"GET /liveness HTTP/1.1\r\nHost: localhost\r\nOrigin: http://evil.example\r\n\r\n",
            403,
        ),
    ] {
        let response = crate::support::raw_request(health, request).await;
        assert_eq!(
            response.status,
            status,
            "{}: {:?}",
            String::from_utf8_lossy(request),
            response.body
        );
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    }
}

#[tokio::test]
async fn listeners_other_hosts_can_reach_need_allow_remote_clients() {
    let google = FakeGoogle::start().await;
    let env = SidecarEnv::new(&google);
    for (flag, value) in [
        ("--listen", "0.0.0.0:19092"),
        ("--http-address", "0.0.0.0"),
        ("--token-endpoint", "0.0.0.0:19093"),
    ] {
        let (code, _, stderr) = run(
            &env,
            &[
                "proxy",
                "--bootstrap-server=127.0.0.1:9",
                &format!("{flag}={value}"),
            ],
        );
        assert_eq!(code, 2, "{flag}: {stderr}");
        let ip = value.split(':').next().unwrap();
        assert!(
            stderr.contains(&format!("{flag} {ip} is not a loopback address"))
                && stderr.contains("--allow-remote-clients"),
            "{flag}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_listeners_hold_the_ipv6_loopback_too() {
    let google = FakeGoogle::start().await;
    let broker = broker().await;
    let env = SidecarEnv::new(&google);
    let base = ports();
    let bootstrap = format!("--bootstrap-server={BOOTSTRAP_HOST}:{}", broker.addr.port());
    let proxy = Proc::spawn(&env, base, &[&bootstrap, &resolve_flag(&broker)]);
    proxy.wait_for("/readiness", 200).await;
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this host: nothing to squat");
        return;
    }
    // The bootstrap port and node 0's port are held on ::1: no other process can take them,
    // and a client resolving localhost to ::1 reaches the proxy.
    for port in [base, base + 1] {
        let taken = std::net::TcpListener::bind(("::1", port)).unwrap_err();
        assert_eq!(taken.kind(), std::io::ErrorKind::AddrInUse, "port {port}");
    }
    let mut client = Client::connect(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, base))).await;
    client.send(&ApiVersionsRequest::default(), 3).await;
    assert_eq!(client.recv::<ApiVersionsRequest>(3).await.1.error_code, 0);
}
