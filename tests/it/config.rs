//! Configuration through the real binary: every `serve` option works as a flag and as its
//! environment variable, `--help` shows both with the default, and invalid values stop the
//! start with a message naming the option.

use std::time::Duration;

use crate::support::{Sidecar, SidecarEnv, decode_response, free_port, java_style_request, run};
use fake_google::{FakeGoogle, Fault};

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// How an option is given in one run.
#[derive(Clone, Copy, Debug)]
enum Via {
    Flag,
    Env,
}

/// Starts `serve` with `option` set to `value` via a flag or its variable; JSON logs and a
/// free port come from the environment so that flags are only the option under test.
fn start_with(fake: &FakeGoogle, via: Via, flag: &str, var: &str, value: &str) -> Sidecar {
    let mut env = SidecarEnv::new(fake);
    if flag != "--log-format" {
        env = env.set("GCP_KAFKA_AUTH_LOG_FORMAT", "json");
    }
    if flag != "--port" {
        env = env.set("GCP_KAFKA_AUTH_PORT", "0");
    }
    match via {
        Via::Flag => Sidecar::spawn(env, &["serve", flag, value]),
        Via::Env => Sidecar::spawn(env.set(var, value), &["serve"]),
    }
}

fn listening_line(sidecar: &Sidecar) -> serde_json::Value {
    sidecar
        .json_logs()
        .into_iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("listening"))
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_and_bind_by_flag_and_by_env() {
    let fake = FakeGoogle::start().await;
    for via in [Via::Flag, Via::Env] {
        let port = free_port();
        let sidecar = start_with(
            &fake,
            via,
            "--port",
            "GCP_KAFKA_AUTH_PORT",
            &port.to_string(),
        );
        assert_eq!(sidecar.addr.port(), port, "{via:?}");
        assert_eq!(sidecar.addr.ip().to_string(), "127.0.0.1", "{via:?}");
        let sidecar = start_with(&fake, via, "--bind", "GCP_KAFKA_AUTH_BIND", "::1");
        assert_eq!(sidecar.addr.ip().to_string(), "::1", "{via:?}");
        let healthz = client().get(sidecar.url("/healthz")).send().await.unwrap();
        assert_eq!(healthz.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_margin_by_flag_and_by_env() {
    let fake = FakeGoogle::start().await;
    for via in [Via::Flag, Via::Env] {
        let sidecar = start_with(
            &fake,
            via,
            "--refresh-margin",
            "GCP_KAFKA_AUTH_REFRESH_MARGIN",
            "20m",
        );
        assert_eq!(listening_line(&sidecar)["refresh_margin_s"], 1200);
        sidecar.wait_ready().await;
        let fetched = sidecar
            .json_logs()
            .into_iter()
            .find(|l| l["message"] == "fetched a Google access token")
            .unwrap();
        // 3600 s tokens, refreshed 20 min before expiry, less up to 5 % jitter (the default
        // 5 min margin would give 3135..=3300).
        let refresh_in = fetched["refresh_in_s"].as_u64().unwrap();
        assert!((2279..=2400).contains(&refresh_in), "{via:?}: {refresh_in}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principal_by_flag_and_by_env() {
    let fake = FakeGoogle::start().await;
    for via in [Via::Flag, Via::Env] {
        let principal = "override@other-project.iam.gserviceaccount.com";
        let sidecar = start_with(
            &fake,
            via,
            "--principal",
            "GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL",
            principal,
        );
        let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
        assert_eq!(decoded.claims["sub"], principal, "{via:?}");
        assert_eq!(listening_line(&sidecar)["principal_override"], principal);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_by_flag_and_by_env() {
    let fake = FakeGoogle::start().await;
    // Google hangs, so a token request stays in flight (up to 15 s) when SIGTERM comes, and
    // the drain time, not the request, decides when the process exits.
    fake.set_fault(Some(Fault::Hang));
    for via in [Via::Flag, Via::Env] {
        let mut sidecar = start_with(
            &fake,
            via,
            "--shutdown-timeout",
            "GCP_KAFKA_AUTH_SHUTDOWN_TIMEOUT",
            "1s",
        );
        assert_eq!(listening_line(&sidecar)["shutdown_timeout_s"], 1);
        let in_flight = tokio::spawn(client().get(sidecar.url("/")).send());
        // The request is accepted while serving has started; only then are the signal
        // handlers sure to be installed.
        let healthz = client().get(sidecar.url("/healthz")).send().await.unwrap();
        assert_eq!(healthz.status(), 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        let status = sidecar.terminate(Duration::from_secs(8)).unwrap();
        assert!(status.success(), "{via:?}: {status:?}");
        // Well before the request would have ended on its own (15 s).
        assert!(started.elapsed() < Duration::from_secs(8));
        assert!(
            sidecar.wait_for_log(
                "requests still in flight after the drain time",
                Duration::from_secs(5)
            ),
            "{via:?}: {}",
            sidecar.logs()
        );
        assert!(
            sidecar.logs().contains(r#""drain_s":1"#),
            "{}",
            sidecar.logs()
        );
        // The client saw the connection close, not an answer.
        assert!(in_flight.await.unwrap().is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_by_flag_and_by_env() {
    let fake = FakeGoogle::start().await;
    for via in [Via::Flag, Via::Env] {
        let sidecar = start_with(
            &fake,
            via,
            "--log-format",
            "GCP_KAFKA_AUTH_LOG_FORMAT",
            "text",
        );
        let logs = sidecar.logs();
        for line in logs.lines() {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_err(),
                "{via:?}: {line}"
            );
        }
        let listening = logs
            .lines()
            .find(|l| l.contains("listening; token endpoint is http://"))
            .unwrap();
        assert!(
            listening.contains(" INFO gcp_kafka_auth_handler: "),
            "{listening}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_filter_by_flag_and_by_env() {
    let fake = FakeGoogle::start().await;
    for via in [Via::Flag, Via::Env] {
        let sidecar = start_with(
            &fake,
            via,
            "--log",
            "RUST_LOG",
            "info,gcp_kafka_auth_handler::endpoint=debug",
        );
        let response = client().put(sidecar.url("/")).send().await.unwrap();
        assert_eq!(response.status(), 405);
        assert!(
            sidecar.wait_for_log("token request refused", Duration::from_secs(5)),
            "{via:?}: {}",
            sidecar.logs()
        );
    }
    // At the default level, the refusal is not logged.
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    client().put(sidecar.url("/")).send().await.unwrap();
    sidecar.wait_for_log("never", Duration::from_millis(300));
    assert!(!sidecar.logs().contains("token request refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_wins_over_its_variable() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake).set(
        "GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL",
        "env@p.iam.gserviceaccount.com",
    );
    let sidecar = Sidecar::start(env, &["--principal", "flag@p.iam.gserviceaccount.com"]);
    let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_eq!(decoded.claims["sub"], "flag@p.iam.gserviceaccount.com");
}

#[test]
fn help_shows_every_variable_and_default() {
    let env = SidecarEnv {
        vars: vec![],
        home: tempfile::tempdir().unwrap(),
    };
    let (code, help, _) = run(&env, &["serve", "--help"]);
    assert_eq!(code, 0);
    // clap wraps lines; compare with whitespace runs collapsed.
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for (flag, var, default) in [
        // No single default value: both loopback addresses, said in the text (checked below).
        ("--bind", "GCP_KAFKA_AUTH_BIND", None),
        ("--port", "GCP_KAFKA_AUTH_PORT", Some("14293")),
        (
            "--refresh-margin",
            "GCP_KAFKA_AUTH_REFRESH_MARGIN",
            Some("5m"),
        ),
        ("--principal", "GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL", None),
        (
            "--shutdown-timeout",
            "GCP_KAFKA_AUTH_SHUTDOWN_TIMEOUT",
            Some("10s"),
        ),
        ("--log-format", "GCP_KAFKA_AUTH_LOG_FORMAT", Some("text")),
        ("--log", "RUST_LOG", Some("info")),
    ] {
        assert!(help.contains(flag), "{flag} missing");
        assert!(
            help.contains(&format!("[env: {var}=]")),
            "{var} missing:\n{help}"
        );
        if let Some(default) = default {
            let at = help.find(&format!("[env: {var}=]")).unwrap();
            assert!(
                help[at..].contains(&format!("[default: {default}]")),
                "{flag}: default {default} missing:\n{help}"
            );
        }
    }
    assert!(
        help.contains(
            "--bind <BIND> Address to listen on [default: 127.0.0.1 and ::1 on the same port"
        ),
        "{help}"
    );
}

#[test]
fn invalid_values_are_refused_at_start_naming_the_option() {
    let env = || SidecarEnv {
        vars: vec![
            ("GCE_METADATA_HOST".into(), "127.0.0.1:9".into()),
            ("GCP_KAFKA_AUTH_PORT".into(), "0".into()),
        ],
        home: tempfile::tempdir().unwrap(),
    };
    for (flag, var, value, says) in [
        (
            "--bind",
            "GCP_KAFKA_AUTH_BIND",
            "localhost",
            "invalid IP address syntax",
        ),
        (
            "--port",
            "GCP_KAFKA_AUTH_PORT",
            "70000",
            "70000 is not in 0..=65535",
        ),
        (
            "--refresh-margin",
            "GCP_KAFKA_AUTH_REFRESH_MARGIN",
            "soon",
            "`soon` is not a duration",
        ),
        (
            "--refresh-margin",
            "GCP_KAFKA_AUTH_REFRESH_MARGIN",
            "1h",
            "must be at most 3000 s",
        ),
        (
            "--principal",
            "GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL",
            "my-project.svc.id.goog",
            "svc.id.goog",
        ),
        (
            "--shutdown-timeout",
            "GCP_KAFKA_AUTH_SHUTDOWN_TIMEOUT",
            "10 parsecs",
            "is not a duration",
        ),
        (
            "--log-format",
            "GCP_KAFKA_AUTH_LOG_FORMAT",
            "xml",
            "[possible values: text, json]",
        ),
        ("--log", "RUST_LOG", "info,x=loud", "is not a log filter"),
    ] {
        for via in [Via::Flag, Via::Env] {
            let (code, stdout, stderr) = match via {
                Via::Flag => run(&env(), &["serve", flag, value]),
                Via::Env => run(&env().set(var, value), &["serve"]),
            };
            assert_eq!(code, 2, "{flag} {value} via {via:?}: {stdout}{stderr}");
            assert!(
                stderr.contains(flag),
                "{flag} {value} via {via:?}: the message does not name the option:\n{stderr}"
            );
            assert!(
                stderr.contains(says),
                "{flag} {value} via {via:?}: expected `{says}` in:\n{stderr}"
            );
            assert!(
                !stderr.contains("listening"),
                "{flag} {value} via {via:?} started anyway"
            );
        }
    }
}
