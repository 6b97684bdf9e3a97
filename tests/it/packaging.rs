//! The packaging, as far as it runs without a container engine: the image's entrypoint,
//! command, environment and health check run against the real binary, and the Dataflow
//! worker entrypoint starts the sidecar and hands over to the boot program.

use std::path::Path;
use std::time::Duration;

use crate::support::{
    BIN, Sidecar, SidecarEnv, decode_response, free_port, java_style_request, run,
};
use fake_google::FakeGoogle;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// The final stage of a Dockerfile: its base, `ENV` pairs, `USER`, and the exec-form
/// `ENTRYPOINT`, `CMD` and `HEALTHCHECK ... CMD`, with continuation lines joined.
struct FinalStage {
    from: String,
    env: Vec<(String, String)>,
    user: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    healthcheck: Vec<String>,
}

fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not exec form ({e}): {text}"))
}

fn final_stage(dockerfile: &str) -> FinalStage {
    let joined = dockerfile.replace("\\\n", " ");
    let instructions: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last_from = instructions
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .unwrap();
    let mut stage = FinalStage {
        from: instructions[last_from][5..].trim().to_owned(),
        env: vec![],
        user: String::new(),
        entrypoint: vec![],
        cmd: vec![],
        healthcheck: vec![],
    };
    for line in &instructions[last_from + 1..] {
        let (word, rest) = line.split_once(' ').unwrap();
        match word {
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair.split_once('=').unwrap();
                    stage
                        .env
                        .push((k.to_owned(), v.trim_matches('"').to_owned()));
                }
            }
            "USER" => stage.user = rest.to_owned(),
            "ENTRYPOINT" => stage.entrypoint = exec_form(rest),
            "CMD" => stage.cmd = exec_form(rest),
            "HEALTHCHECK" => {
                stage.healthcheck = exec_form(&rest[rest.find("CMD ").unwrap() + 4..]);
            }
            _ => {}
        }
    }
    stage
}

const IMAGE_BIN: &str = "/usr/local/bin/gcp-kafka-auth-handler";

#[test]
fn the_image_is_static_distroless_nonroot_and_listens_inside_on_all_interfaces() {
    let stage = final_stage(&repo_file("Dockerfile"));
    assert_eq!(stage.from, "gcr.io/distroless/static-debian12:nonroot");
    assert_eq!(stage.user, "65532:65532");
    assert_eq!(stage.entrypoint, [IMAGE_BIN]);
    assert_eq!(stage.cmd, ["serve"]);
    assert_eq!(stage.healthcheck, [IMAGE_BIN, "healthcheck"]);
    assert!(
        stage
            .env
            .contains(&("GCP_KAFKA_AUTH_BIND".into(), "0.0.0.0".into()))
    );
    let dockerfile = repo_file("Dockerfile");
    assert!(dockerfile.contains("--target \"$target\" --bin gcp-kafka-auth-handler"));
    assert!(dockerfile.contains("-p 127.0.0.1:14293:14293"));
}

/// Runs what the image runs (ENTRYPOINT + CMD with its ENV), then its HEALTHCHECK. Tests
/// listen on loopback only, so the bind address and port are the one substitution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_entrypoint_serves_tokens_and_its_healthcheck_passes() {
    let stage = final_stage(&repo_file("Dockerfile"));
    let fake = FakeGoogle::start().await;
    let port = free_port();
    let mut env = SidecarEnv::new(&fake);
    for (key, value) in &stage.env {
        env = env.set(key, value.clone());
    }
    let env = env
        .set("GCP_KAFKA_AUTH_BIND", "127.0.0.1")
        .set("GCP_KAFKA_AUTH_PORT", port.to_string());
    let argv: Vec<&str> = stage.entrypoint[1..]
        .iter()
        .chain(&stage.cmd)
        .map(String::as_str)
        .collect();
    assert_eq!(stage.entrypoint[0], IMAGE_BIN);
    let health_env = SidecarEnv {
        vars: env.vars.clone(),
        home: tempfile::tempdir().unwrap(),
    };
    let sidecar = Sidecar::spawn(env, &argv);
    assert_eq!(sidecar.addr.port(), port);
    // The image logs JSON.
    assert!(!sidecar.json_logs().is_empty());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let decoded = decode_response(java_style_request(&client, &sidecar.url("/")).await).await;
    assert_eq!(
        decoded.claims["sub"],
        "sidecar@test-project.iam.gserviceaccount.com"
    );
    assert_eq!(stage.healthcheck[0], IMAGE_BIN);
    let health_args: Vec<&str> = stage.healthcheck[1..].iter().map(String::as_str).collect();
    let (code, stdout, stderr) = run(&health_env, &health_args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("/readyz: 200 "), "{stdout}");
}

/// The Dataflow worker entrypoint: the sidecar starts, is ready before the boot program runs,
/// and the boot program gets Dataflow's arguments unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dataflow_entrypoint_starts_the_sidecar_then_boot_with_its_arguments() {
    let fake = FakeGoogle::start().await;
    let port = free_port();
    let env = SidecarEnv::new(&fake);
    // A stand-in for /opt/apache/beam/boot: proves the sidecar is ready, then stops it (the
    // real boot runs for the worker's life and the container's end stops the sidecar).
    let boot = env.home().join("boot");
    std::fs::write(
        &boot,
        "#!/bin/sh\necho \"boot args: $*\"\n\"$SIDECAR\" healthcheck\ncode=$?\nkill -TERM \"$SIDECAR_PID\"\nwait \"$SIDECAR_PID\" 2>/dev/null\nexit $code\n",
    )
    .unwrap();
    std::fs::set_permissions(&boot, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/dataflow/start-sidecar-then-boot.sh");
    let env = env
        .set("SIDECAR", BIN)
        .set("BEAM_BOOT", boot.display().to_string())
        .set("GCP_KAFKA_AUTH_PORT", port.to_string())
        .set("GCP_KAFKA_AUTH_LOG_FORMAT", "json");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .arg(script)
            .args(["--id=sdk-0", "--logging_endpoint=localhost:12370"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap()
    });
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the entrypoint finished")
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("boot args: --id=sdk-0 --logging_endpoint=localhost:12370")
    );
    let health = lines.next().unwrap();
    assert!(
        health.starts_with(&format!("http://127.0.0.1:{port}/readyz: 200 ")),
        "{health}"
    );
    assert!(stderr.contains("fetched a Google access token"), "{stderr}");
}
