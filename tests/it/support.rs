//! Test support: the real binary started against the fake Google, and token decoding.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use fake_google::FakeGoogle;

pub const BIN: &str = env!("CARGO_BIN_EXE_gcp-kafka-auth-handler");

/// A running `gcp-kafka-auth-handler serve`, killed on drop.
pub struct Sidecar {
    child: Option<Child>,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    /// The thread copying stderr into `logs`; it ends when the process's stderr closes.
    log_reader: Option<std::thread::JoinHandle<()>>,
    _home: tempfile::TempDir,
}

/// The environment a sidecar gets: nothing from the test process but PATH, a fresh HOME, and
/// the fake's metadata server and tokeninfo.
pub struct SidecarEnv {
    pub vars: Vec<(String, String)>,
    pub home: tempfile::TempDir,
}

impl SidecarEnv {
    pub fn new(fake: &FakeGoogle) -> Self {
        let home = tempfile::tempdir().unwrap();
        Self {
            vars: vec![
                ("HOME".into(), home.path().display().to_string()),
                ("GCE_METADATA_HOST".into(), fake.metadata_host()),
                ("GCP_KAFKA_AUTH_TOKENINFO_URL".into(), fake.tokeninfo_url()),
            ],
            home,
        }
    }

    pub fn set(mut self, name: &str, value: impl Into<String>) -> Self {
        self.vars.retain(|(k, _)| k != name);
        self.vars.push((name.into(), value.into()));
        self
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Writes `json` to a file in HOME and returns its path.
    pub fn write_file(&self, name: &str, json: &serde_json::Value) -> PathBuf {
        let path = self.home.path().join(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&path, serde_json::to_vec_pretty(json).unwrap()).unwrap();
        path
    }

    /// gcloud's well-known ADC file under HOME.
    pub fn write_gcloud_adc(&self, json: &serde_json::Value) -> PathBuf {
        self.write_file(".config/gcloud/application_default_credentials.json", json)
    }
}

/// `BIN args...` with nothing from the test process's environment but PATH, plus `env`.
pub fn command(env: &SidecarEnv, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null());
    command
}

/// Runs `BIN args...` to the end and returns (exit code, stdout, stderr).
pub fn run(env: &SidecarEnv, args: &[&str]) -> (i32, String, String) {
    let output = command(env, args).output().expect("run the binary");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// A port that was free a moment ago, for processes that must be told a port up front.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The address in a "listening" log line, JSON or text.
fn listening_address(line: &str) -> Option<SocketAddr> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        if v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("listening"))
        {
            return v["address"].as_str()?.parse().ok();
        }
        return None;
    }
    let rest = &line[line.find("token endpoint is http://")? + "token endpoint is http://".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

impl Sidecar {
    /// Starts the sidecar on a free port and waits until it listens.
    pub fn start(env: SidecarEnv, args: &[&str]) -> Sidecar {
        let mut all = vec!["serve", "--port", "0", "--log-format", "json"];
        all.extend_from_slice(args);
        Sidecar::spawn(env, &all)
    }

    /// Runs `BIN args...` (which must serve and log its "listening" line, JSON or text) and
    /// waits until it listens.
    pub fn spawn(env: SidecarEnv, args: &[&str]) -> Sidecar {
        let mut command = command(&env, args);
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        if !env.vars.iter().any(|(k, _)| k == "RUST_LOG") {
            command.env("RUST_LOG", "info");
        }
        let mut child = command.spawn().expect("start the sidecar binary");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let log_reader = {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let addr = listening_address(&line);
                    // Recorded before announced, so the "listening" line is in `logs()`
                    // by the time `spawn` returns.
                    logs.lock().unwrap().push(line);
                    if let Some(addr) = addr {
                        let _ = addr_tx.send(addr);
                    }
                }
            })
        };
        let addr = match addr_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "sidecar did not start; logs:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        Sidecar {
            child: Some(child),
            addr,
            logs,
            log_reader: Some(log_reader),
            _home: env.home,
        }
    }

    /// Every log line so far that is a JSON object, parsed (panics on a line that is not).
    pub fn json_logs(&self) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            })
            .collect()
    }

    /// Waits (at most `limit`) until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.logs().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything the sidecar logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends SIGTERM and waits (at most `limit`) for the exit.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = child.try_wait().unwrap() {
                // The process is gone, so its stderr is closed: once the reader has copied
                // the last lines, `logs()` holds everything it wrote.
                if let Some(reader) = self.log_reader.take() {
                    reader.join().unwrap();
                }
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Waits until `/readyz` is 200 (at most 10 s).
    pub async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(r) = client.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("sidecar never became ready; logs:\n{}", self.logs());
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The library's token endpoint served in this process, as `serve` serves it (default
/// endpoint checks), for scenarios about credential types: what they exercise is the library,
/// and a process of their own would add nothing but start-up time. Stopped on drop.
pub struct InProcess {
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    _home: tempfile::TempDir,
}

impl InProcess {
    /// Builds a provider that reads only `env` (as the binary reads its environment) and
    /// serves its router on a free loopback port.
    pub async fn start(env: SidecarEnv) -> InProcess {
        let provider = gcp_kafka_auth_handler::KafkaTokenProvider::builder()
            .with_env(gcp_kafka_auth_handler::Env::from_pairs(env.vars))
            .build()
            .expect("the provider builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, provider.router())
                .await
                .expect("the endpoint serves");
        });
        InProcess {
            addr,
            server,
            _home: env.home,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A token response taken apart.
#[derive(Debug)]
pub struct Decoded {
    pub header: serde_json::Value,
    pub claims: serde_json::Value,
    pub claims_b64: String,
    pub raw_token: String,
    pub expires_in: i64,
    /// The `access_token` as served.
    pub served: String,
}

/// Checks a 200 token response the way the Java client and librdkafka would, and decodes it.
pub async fn decode_response(response: reqwest::Response) -> Decoded {
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["pragma"], "no-cache");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let expires_in = body["expires_in"].as_i64().expect("integer expires_in");
    let token = body["access_token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    assert!(parts.iter().all(|p| !p.is_empty()), "{token}");
    assert!(!token.contains('='));
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    // kafka-clients < 4.2 decode the claims with the standard alphabet.
    let claims: serde_json::Value =
        serde_json::from_slice(&STANDARD_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let raw_token = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
    Decoded {
        header,
        claims,
        claims_b64: parts[1].to_owned(),
        raw_token,
        expires_in,
        served: token.to_owned(),
    }
}

/// POSTs a token request as the Java client sends it.
pub async fn java_style_request(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client
        .post(url)
        .header("Accept", "application/json")
        .header("Cache-Control", "no-cache")
        .header("Authorization", "Basic dW51c2VkOnVudXNlZA==")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=kafka")
        .send()
        .await
        .unwrap()
}

/// Asserts the claims are what Managed Kafka needs for `principal` and the fake's token.
pub fn assert_claims(decoded: &Decoded, fake: &FakeGoogle, principal: &str) {
    assert_eq!(
        decoded.header,
        serde_json::json!({"typ": "JWT", "alg": "GOOG_OAUTH2_TOKEN"})
    );
    let issued = fake
        .lookup(&decoded.raw_token)
        .expect("the raw token was issued by the fake");
    assert_eq!(issued.principal, principal);
    let claims = decoded.claims.as_object().unwrap();
    assert_eq!(claims.len(), 5, "{claims:?}");
    assert_eq!(claims["sub"], principal);
    assert_eq!(claims["iss"], "Google");
    assert_eq!(claims["scope"], "kafka");
    let exp = claims["exp"].as_u64().expect("integer exp");
    let iat = claims["iat"].as_u64().expect("integer iat");
    // The sidecar counts the lifetime from just before its request and Google from when it
    // answered, so the claim is never later than the real expiry, and earlier by at most the
    // request's duration (plus a second boundary): a loaded machine stretches that, but no
    // request outlives the upstream request timeout, after which the fetch would have failed.
    let longest_request = gcp_kafka_auth_handler::credentials::REQUEST_TIMEOUT.as_secs();
    assert!(
        exp <= issued.expires_at_unix && exp + longest_request + 1 >= issued.expires_at_unix,
        "exp {exp} vs issued {} (at most {longest_request} s earlier)",
        issued.expires_at_unix
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(iat <= now && iat + 60 > now, "iat {iat} now {now}");
    assert!(decoded.expires_in > 0 && decoded.expires_in as u64 <= exp - iat + 1);
}

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }

    /// Asserts an RFC 6749 §5.2 error with this status and `error`, and returns its description.
    pub fn assert_oauth_error(&self, status: u16, error: &str) -> String {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert_eq!(self.header("cache-control"), Some("no-store"));
        let body = self.json();
        assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
        assert_eq!(body["error"], error, "{body}");
        let description = body["error_description"].as_str().unwrap().to_owned();
        assert!(!description.is_empty());
        description
    }
}

/// Sends `request` (a complete HTTP/1.1 request, which should say `Connection: close`) and
/// reads the response until the server closes the connection (at most 30 s).
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> RawResponse {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut bytes))
        .await
        .expect("the server answered within 30 s")
        .unwrap();
    parse_raw_response(&bytes)
}

/// Parses one HTTP/1.1 response with a Content-Length body.
pub fn parse_raw_response(bytes: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    RawResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A GET request with this Host and extra header lines, closing the connection after.
pub fn get_with_host(host: &str, extra: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n").into_bytes()
}

/// `VmRSS` and `VmHWM` (peak RSS) of a process, in KiB, from `/proc/<pid>/status`.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Reads one HTTP/1.1 response with a Content-Length body off a kept-alive connection.
pub async fn read_response<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> RawResponse {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = reader.read_until(b'\n', &mut head).await.unwrap();
        assert!(
            n > 0,
            "connection closed mid-response: {:?}",
            String::from_utf8_lossy(&head)
        );
        if &head[before..] == b"\r\n" {
            break;
        }
    }
    let mut response = parse_raw_response(&head);
    let length: usize = response
        .header("content-length")
        .expect("a Content-Length")
        .parse()
        .unwrap();
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.unwrap();
    response.body = String::from_utf8(body).unwrap();
    response
}

/// Every request the fake received, as `METHOD /path`, in order: the upstream calls.
pub fn upstream_calls(fake: &FakeGoogle) -> Vec<String> {
    fake.requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// The result of `gcp-kafka-auth-handler doctor`.
pub struct DoctorRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl DoctorRun {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// Runs `doctor` with the same environment a sidecar would get (asynchronously, so the fake
/// in this runtime keeps answering).
pub async fn run_doctor(env: &SidecarEnv, args: &[&str]) -> DoctorRun {
    let output = tokio::process::Command::new(BIN)
        .arg("doctor")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run doctor");
    DoctorRun {
        status: output.status,
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// The raw Google access token inside a Kafka token (its third part).
pub fn raw_google_token(kafka_token: &str) -> String {
    let raw = kafka_token.rsplit('.').next().unwrap();
    String::from_utf8(URL_SAFE_NO_PAD.decode(raw).unwrap()).unwrap()
}
