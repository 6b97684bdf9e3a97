//! The subcommands beyond `serve`, through the real binary: `token` (once and `--output`),
//! `client-config` (golden files checked against the client rules), `healthcheck`,
//! `completions`, and `proxy`'s words for a taken port.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::{Sidecar, SidecarEnv, command, free_port, run};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fake_google::{FakeGoogle, Fault};

const MDS_EMAIL: &str = "sidecar@test-project.iam.gserviceaccount.com";

fn empty_env() -> SidecarEnv {
    SidecarEnv {
        vars: vec![],
        home: tempfile::tempdir().unwrap(),
    }
}

/// The raw Google token inside a Kafka token, and its `sub` and `exp`.
fn open_token(token: &str) -> (String, String, u64) {
    let parts: Vec<&str> = token.trim().split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
    (
        raw,
        claims["sub"].as_str().unwrap().to_owned(),
        claims["exp"].as_u64().unwrap(),
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---- token ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_prints_the_kafka_token_once() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || run(&env, &["token"]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 1);
    let (raw, sub, exp) = open_token(&stdout);
    assert_eq!(sub, MDS_EMAIL);
    assert_eq!(fake.lookup(&raw).unwrap().principal, MDS_EMAIL);
    assert!(exp > unix_now() + 3500);
    // Logs go to stderr, never the token.
    assert!(!stderr.contains(stdout.trim()));
    assert!(!stderr.contains(&raw));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_json_prints_the_endpoint_response() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake).set("GCP_KAFKA_AUTH_TOKEN_JSON", "true");
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || run(&env, &["token"]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    let body: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let expires_in = body["expires_in"].as_u64().unwrap();
    assert!((3590..=3600).contains(&expires_in), "{expires_in}");
    let (_, sub, _) = open_token(body["access_token"].as_str().unwrap());
    assert_eq!(sub, MDS_EMAIL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_fails_with_the_reason_when_google_refuses() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let key = env.write_file(
        "key.json",
        &fake.service_account_key_json("gone@test-project.iam.gserviceaccount.com"),
    );
    fake.revoke_service_account_key("gone@test-project.iam.gserviceaccount.com");
    let env = env.set("GOOGLE_APPLICATION_CREDENTIALS", key.display().to_string());
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || run(&env, &["token"]))
        .await
        .unwrap();
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("error: no Kafka token could be had: ")
            && stderr.contains("Invalid JWT Signature"),
        "{stderr}"
    );
}

// ---- the provider flags every command shares ---------------------------------------------

/// The exact header and claims of a Kafka token, and its raw Google token.
fn token_parts(token: &str) -> (String, serde_json::Value, String) {
    let parts: Vec<&str> = token.trim().split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let header = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
    (header, claims, raw)
}

/// Checks the claims are exactly those of a token for `sub` issued within the last half
/// minute, an hour of life (up to the second boundaries `iat` and the Google expiry fall on).
fn assert_claims_for(claims: &serde_json::Value, sub: &str) {
    let iat = claims["iat"].as_u64().unwrap();
    assert!(iat.abs_diff(unix_now()) < 30, "{claims}");
    let exp = claims["exp"].as_u64().unwrap();
    assert!((iat + 3590..=iat + 3600).contains(&exp), "{claims}");
    assert_eq!(
        *claims,
        serde_json::json!({"exp": exp, "iat": iat, "iss": "Google", "scope": "kafka", "sub": sub})
    );
}

/// An access token the fake's metadata server issued (so its tokeninfo knows it).
async fn metadata_server_token(fake: &FakeGoogle) -> String {
    reqwest::Client::new()
        .get(format!(
            "{}/computeMetadata/v1/instance/service-accounts/default/token",
            fake.base_url()
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
        .to_owned()
}

/// `token --credentials-file` and `token --token`, which only `proxy` and `schema-registry`
/// took before: the file wins over the metadata server the ADC search would pick, and the
/// fixed token is wrapped as is, with no other credentials reachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_takes_the_credentials_file_and_token_flags() {
    const HEADER: &str = r#"{"typ":"JWT","alg":"GOOG_OAUTH2_TOKEN"}"#;
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let robot = "robot@test-project.iam.gserviceaccount.com";
    let key = env.write_file("key.json", &fake.service_account_key_json(robot));
    let key = key.to_str().unwrap().to_owned();
    let (code, stdout, stderr) =
        tokio::task::spawn_blocking(move || run(&env, &["token", "--credentials-file", &key]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let (header, claims, raw) = token_parts(&stdout);
    assert_eq!(header, HEADER);
    assert_claims_for(&claims, robot);
    assert_eq!(fake.lookup(&raw).unwrap().principal, robot);

    let google_token = metadata_server_token(&fake).await;
    let env = SidecarEnv::new(&fake).set("GCE_METADATA_HOST", "127.0.0.1:9");
    let given = google_token.clone();
    let (code, stdout, stderr) =
        tokio::task::spawn_blocking(move || run(&env, &["token", "--token", &given]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let (header, claims, raw) = token_parts(&stdout);
    assert_eq!(header, HEADER);
    assert_eq!(raw, google_token);
    // Never refreshed, so it is given an hour from start; the principal is tokeninfo's.
    assert_claims_for(&claims, MDS_EMAIL);
    assert!(
        !stderr.contains(&google_token),
        "the token leaked: {stderr}"
    );
}

/// The flags' refusals, the same words on `token` and `serve` as on `proxy`.
#[test]
fn token_and_serve_refuse_an_unreadable_credentials_file_and_an_empty_token() {
    for command in ["token", "serve"] {
        let base: &[&str] = if command == "token" {
            &["token"]
        } else {
            &["serve", "--port", "0"]
        };
        let with =
            |extra: &[&'static str]| -> Vec<&str> { base.iter().chain(extra).copied().collect() };
        let (code, stdout, stderr) = run(
            &empty_env(),
            &with(&["--credentials-file", "/nonexistent/key.json"]),
        );
        assert_eq!((code, stdout.as_str()), (2, ""), "{command}: {stderr}");
        assert_eq!(
            stderr.lines().last(),
            Some(
                "error: --credentials-file /nonexistent/key.json (GCP_KAFKA_AUTH_CREDENTIALS_FILE) cannot be read: No such file or directory (os error 2)"
            ),
            "{command}: {stderr}"
        );
        let env = empty_env().set("GCP_KAFKA_AUTH_TOKEN", " ");
        let (code, stdout, stderr) = run(&env, base);
        assert_eq!((code, stdout.as_str()), (2, ""), "{command}: {stderr}");
        assert_eq!(
            stderr.lines().last(),
            Some(
                "error: --token (GCP_KAFKA_AUTH_TOKEN) is empty: pass an access token, e.g. $(gcloud auth print-access-token)"
            ),
            "{command}: {stderr}"
        );
        let (code, _, stderr) = run(
            &empty_env(),
            &with(&["--credentials-file", "/k.json", "--token", "t"]),
        );
        assert_eq!(code, 2, "{command}: {stderr}");
        assert!(
            stderr.starts_with("error: the argument '--credentials-file <FILE>' cannot be used with '--token <ACCESS_TOKEN>'"),
            "{command}: {stderr}"
        );
    }
}

/// `serve --credentials-file` and `serve --token`: the endpoint hands out tokens of that file's
/// service account, or wraps the given token, instead of the metadata server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_the_credentials_file_and_token_flags() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let robot = "robot@test-project.iam.gserviceaccount.com";
    let key = env.write_file("key.json", &fake.service_account_key_json(robot));
    let sidecar = Sidecar::start(env, &["--credentials-file", key.to_str().unwrap()]);
    let body: serde_json::Value = reqwest::get(sidecar.url("/"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (_, claims, raw) = token_parts(body["access_token"].as_str().unwrap());
    assert_claims_for(&claims, robot);
    assert_eq!(fake.lookup(&raw).unwrap().principal, robot);

    let google_token = metadata_server_token(&fake).await;
    let env = SidecarEnv::new(&fake).set("GCE_METADATA_HOST", "127.0.0.1:9");
    let sidecar = Sidecar::start(env, &["--token", &google_token]);
    let body: serde_json::Value = reqwest::get(sidecar.url("/"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (_, claims, raw) = token_parts(body["access_token"].as_str().unwrap());
    assert_eq!(raw, google_token);
    assert_claims_for(&claims, MDS_EMAIL);
    assert!(
        !sidecar.logs().contains(&google_token),
        "the token leaked: {}",
        sidecar.logs()
    );
}

/// Reads `path` until `stop`, recording every distinct content; panics on a read that is not
/// one whole token.
fn watch_file(path: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, Vec<String>)> {
    std::thread::spawn(move || {
        let mut reads = 0u64;
        let mut seen: Vec<String> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    reads += 1;
                    let parts: Vec<&str> = text.split('.').collect();
                    assert!(
                        parts.len() == 3 && parts.iter().all(|p| p.len() > 10),
                        "partial read: {text:?}"
                    );
                    if seen.last() != Some(&text) {
                        seen.push(text);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
        (reads, seen)
    })
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_output_replaces_the_file_atomically_and_refreshes_it_before_expiry() {
    let fake = FakeGoogle::start().await;
    // 24 s tokens (the sidecar accepts 20 s and more): the cache refreshes at half their
    // life, 11.4–12 s, since the 5 min margin is longer than the life.
    fake.set_token_lifetime(Duration::from_secs(24));
    let env = SidecarEnv::new(&fake).set("GCP_KAFKA_AUTH_LOG_FORMAT", "json");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kafka.token");
    // A file from an earlier run, readable by all: the first write must replace it with 0600.
    std::fs::write(&path, "aaaaaaaaaaaa.bbbbbbbbbbbb.cccccccccccc").unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let reader = watch_file(path.clone(), stop.clone());
    let mut child = command(&env, &["token", "--output", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // Wait for two tokens from the fake (the first and its refresh), at most 30 s.
    let mut tokens: Vec<String> = Vec::new();
    while tokens.len() < 2 && started.elapsed() < Duration::from_secs(30) {
        if let Ok(text) = std::fs::read_to_string(&path)
            && text.starts_with("eyJ")
            && tokens.last() != Some(&text)
        {
            if tokens.is_empty() {
                assert_eq!(mode(&path), 0o600);
            }
            // The new token arrives while the previous one is still valid.
            if let Some(previous) = tokens.last() {
                let (_, _, previous_exp) = open_token(previous);
                assert!(unix_now() < previous_exp, "refreshed after expiry");
            }
            tokens.push(text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let (reads, seen) = reader.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();

    assert_eq!(tokens.len(), 2, "no refresh within 30 s; logs:\n{stderr}");
    assert!(status.success(), "{status:?}\n{stderr}");
    assert_eq!(mode(&path), 0o600);
    for token in &tokens {
        let (raw, sub, _) = open_token(token);
        assert_eq!(sub, MDS_EMAIL);
        assert_eq!(fake.lookup(&raw).unwrap().principal, MDS_EMAIL);
    }
    // The reader saw the planted file, then exactly the tokens written, each whole.
    assert!(reads > 100, "only {reads} reads");
    let seen_tokens: Vec<&String> = seen.iter().filter(|t| t.starts_with("eyJ")).collect();
    assert_eq!(seen_tokens, tokens.iter().collect::<Vec<_>>());
    // No temporary file is left in the directory.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["kafka.token"]);
    // One line per written token.
    assert_eq!(stderr.matches("wrote a fresh token").count(), 2, "{stderr}");
}

/// Runs `token args...` to its end (at most 15 s; killed after) and returns (code, stderr).
async fn token_command(env: &SidecarEnv, args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["token"];
    all.extend_from_slice(args);
    let mut command = tokio::process::Command::from(command(env, &all));
    command.kill_on_drop(true).stdout(Stdio::null());
    let output = tokio::time::timeout(Duration::from_secs(15), command.output())
        .await
        .unwrap_or_else(|_| panic!("`token {args:?}` still running after 15 s"))
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Run as root with `/dev/null`, `--output` used to turn the device into a 0600 file: whatever
/// exists at the path and is not a regular file is refused, and stays as it was.
#[tokio::test]
async fn token_output_refuses_anything_but_a_regular_file() {
    use std::os::unix::fs::FileTypeExt as _;
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let socket = dir.path().join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let subdir = dir.path().join("dir");
    std::fs::create_dir(&subdir).unwrap();
    let target = dir.path().join("target");
    std::fs::write(&target, "old").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for (path, found) in [
        (&fifo, "a FIFO (named pipe)"),
        (&socket, "a socket"),
        (&subdir, "a directory"),
        (&link, "a symbolic link"),
    ] {
        let (code, stderr) = token_command(&env, &["--output", path.to_str().unwrap()]).await;
        assert_eq!(code, Some(2), "{path:?}: {stderr}");
        let expected = format!(
            "error: cannot write the token to {}: it is {found}, not a regular file",
            path.display()
        );
        assert!(stderr.contains(&expected), "{path:?}: {stderr}");
    }
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(std::fs::metadata(&socket).unwrap().file_type().is_socket());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "old");
    let (code, stderr) = token_command(&env, &["--output", link.to_str().unwrap()]).await;
    assert!(stderr.contains("pass --follow-symlink"), "{stderr}");
    assert_eq!(code, Some(2));
    // Asked to, it writes through the link, which stays a link.
    let (code, stderr) = token_command(
        &env,
        &[
            "--output",
            link.to_str().unwrap(),
            "--follow-symlink",
            "--once",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let (_, sub, _) = open_token(&std::fs::read_to_string(&target).unwrap());
    assert_eq!(sub, MDS_EMAIL);
    assert_eq!(mode(&target), 0o600);
}

/// A write that fails (here: the directory is not there yet) keeps the old file, is logged and
/// retried with backoff; only `--once` turns it into a failing exit status.
#[tokio::test]
async fn token_output_retries_a_failed_write_and_once_reports_it_in_the_exit_status() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let dir = tempfile::tempdir().unwrap();
    let later = dir.path().join("later");
    let path = later.join("kafka.token");
    let (code, stderr) = token_command(&env, &["--output", path.to_str().unwrap(), "--once"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: cannot write the token to {}",
            path.display()
        )),
        "{stderr}"
    );
    let mut child = tokio::process::Command::from(command(
        &env,
        &["token", "--output", path.to_str().unwrap()],
    ))
    .kill_on_drop(true)
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Fails at least once (logged), then the directory appears and the next retry writes.
    let started = Instant::now();
    let mut stderr = child.stderr.take().unwrap();
    let mut logs = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&logs).contains("retrying in") {
        use tokio::io::AsyncReadExt as _;
        let n = tokio::time::timeout(Duration::from_secs(10), stderr.read(&mut buf))
            .await
            .expect("a logged write failure within 10 s")
            .unwrap();
        assert!(n > 0, "exited: {}", String::from_utf8_lossy(&logs));
        logs.extend_from_slice(&buf[..n]);
    }
    std::fs::create_dir(&later).unwrap();
    while !path.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited: {}",
            String::from_utf8_lossy(&logs)
        );
        assert!(started.elapsed() < Duration::from_secs(20), "never written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, sub, _) = open_token(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(sub, MDS_EMAIL);
    Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

// ---- client-config ------------------------------------------------------------------------

/// (golden file, arguments after `client-config`)
const GOLDEN: &[(&str, &[&str])] = &[
    ("java.txt", &["--client", "java"]),
    (
        "java-3.3.txt",
        &["--client", "java", "--kafka-version", "3.3"],
    ),
    (
        "java-3.4.txt",
        &["--client", "java", "--kafka-version", "3.4"],
    ),
    (
        "java-3.9.1.txt",
        &["--client", "java", "--kafka-version", "3.9.1"],
    ),
    (
        "java-4.0.txt",
        &["--client", "java", "--kafka-version", "4.0"],
    ),
    (
        "java-4.1-custom-url.txt",
        &[
            "--client",
            "java",
            "--kafka-version",
            "4.1",
            "--url",
            "http://127.0.0.1:8085/token",
        ],
    ),
    ("librdkafka.txt", &["--client", "librdkafka"]),
    (
        "librdkafka-scheme-less.txt",
        &["--client", "librdkafka", "--url", "localhost:14293"],
    ),
    ("beam-python.txt", &["--client", "beam-python"]),
    (
        "beam-java-3.9.txt",
        &["--client", "beam-java", "--kafka-version", "3.9"],
    ),
    (
        "kafka-cli-4.0.txt",
        &["--client", "kafka-cli", "--kafka-version", "4.0"],
    ),
    (
        "kafka-cli-3.3.txt",
        &["--client", "kafka-cli", "--kafka-version", "3.3"],
    ),
    ("proxy.txt", &["--client", "proxy"]),
    (
        "proxy-custom-address.txt",
        &["--client", "proxy", "--proxy-address", "10.0.0.7:19092"],
    ),
    ("schema-registry.txt", &["--client", "schema-registry"]),
];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/client-config")
}

/// Compares every output with its golden file; `UPDATE_GOLDEN=1` rewrites them instead.
#[test]
fn client_config_matches_the_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for (file, args) in GOLDEN {
        let mut all = vec!["client-config"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = run(&empty_env(), &all);
        assert_eq!(code, 0, "{all:?}: {stderr}");
        let path = golden_dir().join(file);
        if update {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&path, &stdout).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(stdout.as_str()) {
            mismatches.push(format!("{file} ({all:?}) differs; got:\n{stdout}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "run with UPDATE_GOLDEN=1 after checking:\n{}",
        mismatches.join("\n")
    );
}

fn property(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
}

/// The client-configuration rules (the handler class per kafka-clients version, the 4.0+
/// `allowed.urls` system property, librdkafka's `oidc` method), checked on the golden files themselves (so a regenerated golden file
/// cannot drift from them).
#[test]
fn golden_files_follow_the_kafka_client_rules() {
    let read = |f: &str| std::fs::read_to_string(golden_dir().join(f)).unwrap();
    let new = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler";
    let secured =
        "org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerLoginCallbackHandler";
    let jaas = r#"org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required clientId="unused" clientSecret="unused";"#;
    let allowed = "-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=";
    for (file, handler, url, allowed_required) in [
        ("java.txt", new, "http://localhost:14293", true),
        ("java-3.3.txt", secured, "http://localhost:14293", false),
        ("java-3.4.txt", new, "http://localhost:14293", false),
        ("java-3.9.1.txt", new, "http://localhost:14293", false),
        ("java-4.0.txt", new, "http://localhost:14293", true),
        (
            "java-4.1-custom-url.txt",
            new,
            "http://127.0.0.1:8085/token",
            true,
        ),
        ("kafka-cli-4.0.txt", new, "http://localhost:14293", true),
        (
            "kafka-cli-3.3.txt",
            secured,
            "http://localhost:14293",
            false,
        ),
    ] {
        let text = read(file);
        assert_eq!(
            property(&text, "security.protocol").as_deref(),
            Some("SASL_SSL"),
            "{file}"
        );
        assert_eq!(
            property(&text, "sasl.mechanism").as_deref(),
            Some("OAUTHBEARER"),
            "{file}"
        );
        assert_eq!(
            property(&text, "sasl.oauthbearer.token.endpoint.url").as_deref(),
            Some(url),
            "{file}"
        );
        assert_eq!(
            property(&text, "sasl.login.callback.handler.class").as_deref(),
            Some(handler),
            "{file}"
        );
        assert_eq!(
            property(&text, "sasl.jaas.config").as_deref(),
            Some(jaas),
            "{file}"
        );
        assert_eq!(
            text.contains(&format!("{allowed}{url}\""))
                || text.contains(&format!("{allowed}{url}\n")),
            allowed_required,
            "{file}: allowed.urls for {url}"
        );
    }
    assert!(read("java-3.9.1.txt").contains("3.9.1 and later check"));
    assert!(!read("java-3.4.txt").contains("allowed.urls"));
    assert!(read("kafka-cli-4.0.txt").contains(
        "export KAFKA_OPTS=\"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=http://localhost:14293\""
    ));
    for (file, url) in [
        ("librdkafka.txt", "http://localhost:14293"),
        ("librdkafka-scheme-less.txt", "localhost:14293"),
    ] {
        let text = read(file);
        assert_eq!(
            property(&text, "sasl.oauthbearer.method").as_deref(),
            Some("oidc")
        );
        assert_eq!(
            property(&text, "sasl.oauthbearer.token.endpoint.url").as_deref(),
            Some(url)
        );
        assert_eq!(
            property(&text, "sasl.oauthbearer.client.id").as_deref(),
            Some("unused")
        );
        assert_eq!(
            property(&text, "sasl.oauthbearer.client.secret").as_deref(),
            Some("unused")
        );
    }
    let python = read("beam-python.txt");
    assert!(python.contains(&format!(
        "    \"sasl.login.callback.handler.class\": \"{new}\","
    )));
    assert!(python.contains(&format!("    \"sasl.jaas.config\": '{jaas}',")));
    assert!(python.contains("ReadFromKafka(consumer_config=consumer_config"));
    let java = read("beam-java-3.9.txt");
    assert!(java.contains(&format!(
        "    \"sasl.login.callback.handler.class\", \"{new}\","
    )));
    assert!(java.contains(".withConsumerConfigUpdates(kafkaAuth)"));
}

#[test]
fn client_config_refuses_what_cannot_work() {
    for (args, says) in [
        (
            &["--client", "java", "--kafka-version", "3.0"][..],
            "kafka-clients 3.0.0 cannot fetch tokens from an OAuth endpoint",
        ),
        (
            &["--client", "librdkafka", "--kafka-version", "4.0"][..],
            "does not apply to librdkafka",
        ),
        (
            &["--client", "java", "--kafka-version", "4"][..],
            "invalid value '4' for '--kafka-version <KAFKA_VERSION>'",
        ),
        (
            &["--client", "python"][..],
            "invalid value 'python' for '--client <CLIENT>'",
        ),
        (
            &["--client", "java", "--url", "http://local host"][..],
            "is not a usable token endpoint URL",
        ),
    ] {
        let mut all = vec!["client-config"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = run(&empty_env(), &all);
        assert_eq!(code, 2, "{args:?}");
        assert_eq!(stdout, "", "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

// ---- healthcheck ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_0_when_ready_and_1_otherwise() {
    let fake = FakeGoogle::start().await;
    let port = free_port();
    let env = SidecarEnv::new(&fake)
        .set("GCP_KAFKA_AUTH_PORT", port.to_string())
        .set("GCP_KAFKA_AUTH_LOG_FORMAT", "json");
    let check_env = || empty_env().set("GCP_KAFKA_AUTH_PORT", port.to_string());

    // Nothing listens yet.
    let (code, stdout, _) = run(&check_env(), &["healthcheck"]);
    assert_eq!(code, 1);
    assert!(
        stdout.starts_with(&format!("http://127.0.0.1:{port}/readyz: no answer")),
        "{stdout}"
    );

    fake.set_fault(Some(Fault::Status(503)));
    let sidecar = Sidecar::spawn(env, &["serve"]);
    assert!(sidecar.wait_for_log("could not refresh", Duration::from_secs(10)));
    let (code, stdout, _) = run(&check_env(), &["healthcheck"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("/readyz: 503 "), "{stdout}");
    let (code, stdout, _) = run(&check_env(), &["healthcheck", "--liveness"]);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(
        stdout,
        format!("http://127.0.0.1:{port}/healthz: 200 {{\"status\":\"ok\"}}\n")
    );

    fake.set_fault(None);
    sidecar.wait_ready().await;
    let (code, stdout, _) = run(
        &check_env().set("GCP_KAFKA_AUTH_BIND", "0.0.0.0"),
        &["healthcheck"],
    );
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.starts_with(&format!("http://127.0.0.1:{port}/readyz: 200 {{"))
            && stdout.contains(r#""status":"ready""#)
            && stdout.contains(MDS_EMAIL),
        "{stdout}"
    );
}

// ---- a taken port ---------------------------------------------------------------------------

/// `proxy` has no `--port` or `--bind` (those are `serve`'s): a taken Kafka port names the flag
/// that moves it, `--listen`, and the start fails with exit status 2 before anything else.
#[tokio::test]
async fn proxy_names_listen_when_its_kafka_port_is_taken() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut command = tokio::process::Command::from(command(
        &empty_env(),
        &[
            "proxy",
            "--bootstrap-server",
            "127.0.0.1:1",
            "--listen",
            &listen,
            "--log",
            "off",
        ],
    ));
    command.kill_on_drop(true).stdout(Stdio::null());
    let output = tokio::time::timeout(Duration::from_secs(15), command.output())
        .await
        .expect("`proxy` on a taken port still running after 15 s")
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "error: cannot listen on {listen} for 127.0.0.1:1: cannot listen on {listen}: another process holds it (an earlier sidecar, or one squatting the port to intercept its clients: find it with `ss -ltnp 'sport = :{port}'`); stop it, or pick another port with --listen\n"
        )
    );
    drop(squatter);
}

// ---- completions ----------------------------------------------------------------------------

#[test]
fn completions_cover_every_subcommand_and_option() {
    let (code, bash, _) = run(&empty_env(), &["completions", "bash"]);
    assert_eq!(code, 0);
    for word in [
        "serve",
        "token",
        "client-config",
        "healthcheck",
        "completions",
        "--refresh-margin",
        "--kafka-version",
        "beam-python",
    ] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let (code, script, _) = run(&empty_env(), &["completions", shell]);
        assert_eq!(code, 0, "{shell}");
        assert!(script.contains("client-config"), "{shell}");
    }
    let (code, _, stderr) = run(&empty_env(), &["completions", "tcsh"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("invalid value 'tcsh'"), "{stderr}");
}
