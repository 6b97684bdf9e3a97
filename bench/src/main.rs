//! The load benchmark behind `bench/run.sh` (see `docs/performance.md`).
//!
//! In one run on one machine it:
//!
//! 1. starts `fake-google` and measures, over several cold starts of our release binary, the
//!    time from spawning the process to its port accepting connections and to the first token
//!    served (one token fetch from the fake metadata server), and the upstream calls each took;
//! 2. keeps the last sidecar running with its warm cache and starts `baseline` (a bare hyper
//!    server answering a fixed body of the same size with the same headers) as the physical
//!    limit;
//! 3. drives both with `wrk` (POST `grant_type=client_credentials`, as the Kafka clients send),
//!    keep-alive and then a new connection per request, alternating the servers every run;
//! 4. writes the run as JSON (`--out`, else stdout): every wrk run's requests/s, p50/p99
//!    latency, the server's CPU time (utime+stime from `/proc/<pid>/stat`) and the load average
//!    when it began; peak RSS (`VmHWM`); upstream token calls during the load; the cold starts;
//!    the size of the release binaries. `bench/report.py` renders the table (medians over
//!    rounds, ours/baseline) from it.
//!
//! Everything binds 127.0.0.1 and every run is bounded by `--duration`. The binaries are found
//! next to this one (`target/release/`); `run.sh` builds them.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Settings, from the command line (`bench --help`).
struct Settings {
    duration_s: u64,
    rounds: usize,
    connections: u32,
    threads: u32,
    cold_starts: usize,
    musl_binary: Option<PathBuf>,
    /// Where the run's JSON goes (stdout when unset).
    out: Option<PathBuf>,
}

/// Seconds of load on each server, per mode, before the measured rounds.
const WARMUP_S: u64 = 2;

const USAGE: &str = "usage: bench [--duration SECS(10)] [--rounds N(3)] [--connections N(16)] \
                     [--threads N(2)] [--cold-starts N(10)] [--musl-binary PATH] \
                     [--out RUN.json]";

fn main() {
    let settings = parse_args();
    let dir = std::env::current_exe()
        .expect("the path of this executable")
        .parent()
        .expect("a directory")
        .to_path_buf();
    let ours_bin = dir.join("gcp-kafka-auth-handler");
    let fake_bin = dir.join("fake-google");
    let baseline_bin = dir.join("baseline");
    for bin in [&ours_bin, &fake_bin, &baseline_bin] {
        assert!(
            bin.exists(),
            "{} is missing: run bench/run.sh, which builds it",
            bin.display()
        );
    }
    let scratch = std::env::temp_dir().join(format!("gkah-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("create a scratch directory");

    let fake = Fake::start(&fake_bin);

    // 1. Cold starts; the last sidecar stays up as the warm server.
    let mut starts = Vec::new();
    let mut ours = None;
    for i in 0..settings.cold_starts {
        let before = fake.stats();
        let (sidecar, start) =
            Sidecar::cold_start(&ours_bin, &fake, &scratch.join(format!("home{i}")));
        let after = fake.stats();
        starts.push((
            start,
            after.token_calls - before.token_calls,
            after.all_calls - before.all_calls,
        ));
        if let Some(mut previous) = ours.replace(sidecar) {
            previous.stop();
        }
    }
    let mut ours = ours.expect("at least one cold start");
    let idle_rss_kb = status_kb(ours.pid(), "VmRSS");

    // 2. The baseline, with a body as long as ours.
    let (status, body) = http(ours.addr, "POST", "/", "grant_type=client_credentials");
    assert_eq!(
        status,
        200,
        "the warm sidecar answers 200: {}",
        String::from_utf8_lossy(&body)
    );
    let body_bytes = body.len();
    let mut baseline_listen = Vec::new();
    for _ in 1..settings.cold_starts {
        let (mut b, listening) = Baseline::start(&baseline_bin, body_bytes);
        baseline_listen.push(listening.as_secs_f64() * 1e3);
        b.stop();
    }
    let (mut baseline, listening) = Baseline::start(&baseline_bin, body_bytes);
    baseline_listen.push(listening.as_secs_f64() * 1e3);

    // 3. Load.
    let script = scratch.join("token-request.lua");
    std::fs::write(&script, WRK_SCRIPT).expect("write the wrk script");
    let load_before = fake.stats();
    let mut ours_requests = 0u64;
    let mut results: Vec<(Mode, Server, RunResult)> = Vec::new();
    for mode in [Mode::KeepAlive, Mode::Close] {
        // Warm both up (connections, allocator, caches) before measuring.
        for (pid, addr) in [(ours.pid(), ours.addr), (baseline.pid(), baseline.addr)] {
            let warm = wrk(&settings, &script, addr, mode, WARMUP_S, pid);
            if addr == ours.addr {
                ours_requests += warm.requests;
            }
        }
        for round in 0..settings.rounds {
            // Alternate which server goes first, so drift in the machine's load hits both.
            let order = if round % 2 == 0 {
                [Server::Ours, Server::Baseline]
            } else {
                [Server::Baseline, Server::Ours]
            };
            for server in order {
                let (pid, addr) = match server {
                    Server::Ours => (ours.pid(), ours.addr),
                    Server::Baseline => (baseline.pid(), baseline.addr),
                };
                let mut result = wrk(&settings, &script, addr, mode, settings.duration_s, pid);
                result.round = round + 1;
                eprintln!(
                    "  {:<10} {:<8} round {}: {:>8.0} req/s  p50 {:>6} µs  p99 {:>6} µs",
                    mode.name(),
                    server.name(),
                    round + 1,
                    result.rps(),
                    result.p50_us,
                    result.p99_us
                );
                if server == Server::Ours {
                    ours_requests += result.requests;
                }
                results.push((mode, server, result));
            }
        }
    }
    let load_after = fake.stats();
    let ours_peak_kb = status_kb(ours.pid(), "VmHWM");
    let baseline_peak_kb = status_kb(baseline.pid(), "VmHWM");
    let ours_threads = status_kb(ours.pid(), "Threads");

    // 4. The run, as JSON: `bench/report.py` renders its table from this file, so the figures
    //    a document quotes always have their run beside them.
    let listening_ms: Vec<f64> = starts
        .iter()
        .map(|s| s.0.listening.as_secs_f64() * 1e3)
        .collect();
    let first_token_ms: Vec<f64> = starts
        .iter()
        .map(|s| s.0.first_token.as_secs_f64() * 1e3)
        .collect();
    let samples: Vec<serde_json::Value> = results
        .iter()
        .map(|(mode, server, r)| {
            serde_json::json!({
                "mode": mode.name(),
                "server": server.name(),
                "round": r.round,
                "load1": r.load1,
                "requests": r.requests,
                "duration_us": r.duration_us,
                "requests_per_sec": r.rps(),
                "p50_us": r.p50_us,
                "p99_us": r.p99_us,
                "cpu_us_per_request": r.cpu_us_per_request(),
            })
        })
        .collect();
    let summary = serde_json::json!({
        "kind": "http-token-endpoint",
        "machine": machine(),
        "secs": settings.duration_s,
        "warmup_secs": WARMUP_S,
        "rounds": settings.rounds,
        "wrk_threads": settings.threads,
        "wrk_connections": settings.connections,
        "samples": samples,
        "peak_rss_kib": {"ours": ours_peak_kb, "baseline": baseline_peak_kb},
        "idle_rss_kib": idle_rss_kb,
        "threads": ours_threads,
        "body_bytes": body_bytes,
        "upstream": {
            "token_calls_during_load": load_after.token_calls - load_before.token_calls,
            "requests_during_load": ours_requests,
            "token_lifetime_secs": fake.token_lifetime_s,
            "token_calls_of_the_warm_sidecar":
                starts.last().map(|s| s.1).unwrap_or_default()
                    + (load_after.token_calls - load_before.token_calls),
        },
        "cold_starts": {
            "listening_ms": listening_ms,
            "first_token_ms": first_token_ms,
            "token_calls": starts.iter().map(|s| s.1).collect::<Vec<_>>(),
            "all_calls": starts.iter().map(|s| s.2).collect::<Vec<_>>(),
            "baseline_listening_ms": baseline_listen,
        },
        "binary_mb": file_mb(&ours_bin),
        "musl_binary_mb": settings.musl_binary.as_ref().filter(|p| p.exists()).map(|p| file_mb(p)),
    });
    let text = serde_json::to_string_pretty(&summary).expect("the run serialises") + "\n";
    match &settings.out {
        Some(path) => {
            std::fs::write(path, text)
                .unwrap_or_else(|e| panic!("write the run to {}: {e}", path.display()));
            eprintln!("the run: {}", path.display());
        }
        None => print!("{text}"),
    }

    ours.stop();
    baseline.stop();
    drop(fake);
    let _ = std::fs::remove_dir_all(&scratch);
}

fn parse_args() -> Settings {
    let mut settings = Settings {
        duration_s: 10,
        rounds: 3,
        connections: 16,
        threads: 2,
        cold_starts: 10,
        musl_binary: None,
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value; {USAGE}"));
        let number = || -> u64 {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{flag} takes a number, not {value:?}"))
        };
        match flag.as_str() {
            "--duration" => settings.duration_s = number().clamp(1, 60),
            "--rounds" => settings.rounds = number().clamp(1, 10) as usize,
            "--connections" => settings.connections = number().clamp(1, 1000) as u32,
            "--threads" => settings.threads = number().clamp(1, 64) as u32,
            "--cold-starts" => settings.cold_starts = number().clamp(1, 50) as usize,
            "--musl-binary" => settings.musl_binary = Some(PathBuf::from(value)),
            "--out" => settings.out = Some(PathBuf::from(value)),
            other => panic!("unknown flag {other}; {USAGE}"),
        }
    }
    settings
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    KeepAlive,
    Close,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::KeepAlive => "keep-alive",
            Mode::Close => "close",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Ours,
    Baseline,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Ours => "ours",
            Server::Baseline => "baseline",
        }
    }
}

/// The request the Kafka clients send, and a `done` hook that prints exact figures (wrk's
/// human-readable summary rounds them).
const WRK_SCRIPT: &str = r#"
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Accept"] = "application/json"
wrk.headers["Authorization"] = "Basic dW51c2VkOnVudXNlZA=="
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"#;

/// One wrk run and the server's CPU time during it.
struct RunResult {
    /// The measured round, from 1 (0: warm-up).
    round: usize,
    /// The 1-minute load average when the run began.
    load1: f64,
    requests: u64,
    duration_us: u64,
    p50_us: u64,
    p99_us: u64,
    cpu_ticks: u64,
}

impl RunResult {
    fn rps(&self) -> f64 {
        self.requests as f64 * 1e6 / self.duration_us.max(1) as f64
    }

    fn cpu_us_per_request(&self) -> f64 {
        self.cpu_ticks as f64 * 1e6 / clock_ticks_per_second() as f64 / self.requests.max(1) as f64
    }
}

fn wrk(
    settings: &Settings,
    script: &Path,
    addr: SocketAddr,
    mode: Mode,
    duration_s: u64,
    pid: u32,
) -> RunResult {
    let mut command = Command::new("wrk");
    command
        .arg(format!("-t{}", settings.threads))
        .arg(format!("-c{}", settings.connections))
        .arg(format!("-d{duration_s}s"))
        .arg("--timeout")
        .arg("5s")
        .arg("-s")
        .arg(script);
    if mode == Mode::Close {
        command.args(["-H", "Connection: close"]);
    }
    command.arg(format!("http://{addr}/"));
    let load1 = load_average()[0];
    let cpu_before = cpu_ticks(pid);
    let output = command.output().expect("run wrk (apt-get install wrk)");
    let cpu_after = cpu_ticks(pid);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "wrk failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("BENCH "))
        .unwrap_or_else(|| panic!("wrk printed no BENCH line: {stdout}"));
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    let errors: u64 = ["connect", "read", "write", "status", "timeout"]
        .iter()
        .map(|n| field(n))
        .sum();
    // A benchmark of errors measures nothing: every response must be a 2xx.
    assert_eq!(
        errors,
        0,
        "wrk saw errors against {addr} ({}): {line}",
        mode.name()
    );
    RunResult {
        round: 0,
        load1,
        requests: field("requests"),
        duration_us: field("duration_us"),
        p50_us: field("p50_us"),
        p99_us: field("p99_us"),
        cpu_ticks: cpu_after - cpu_before,
    }
}

/// The fake Google, as a process.
struct Fake {
    child: Child,
    base: SocketAddr,
    metadata_host: String,
    tokeninfo_url: String,
    token_lifetime_s: u64,
}

struct Stats {
    token_calls: u64,
    all_calls: u64,
}

impl Fake {
    fn start(bin: &Path) -> Fake {
        let token_lifetime_s = 3600;
        let mut child = Command::new(bin)
            .args([
                "--port",
                "0",
                "--token-lifetime-secs",
                &token_lifetime_s.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fake-google");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read fake-google's URLs");
        let urls: serde_json::Value = serde_json::from_str(&line).expect("fake-google prints JSON");
        let text = |k: &str| {
            urls[k]
                .as_str()
                .unwrap_or_else(|| panic!("no {k} in {line}"))
                .to_owned()
        };
        let base_url = text("base_url");
        let base = base_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("base_url is http://ip:port");
        Fake {
            child,
            base,
            metadata_host: text("metadata_host"),
            tokeninfo_url: text("tokeninfo_url"),
            token_lifetime_s,
        }
    }

    fn stats(&self) -> Stats {
        let (status, body) = http(self.base, "GET", "/_fake/stats", "");
        assert_eq!(status, 200);
        let stats: serde_json::Value = serde_json::from_slice(&body).expect("stats are JSON");
        let count = |k: &str| stats[k].as_u64().unwrap_or(0);
        Stats {
            token_calls: count("metadata_token")
                + count("oauth_token")
                + count("sts_token")
                + count("iam_generate_access_token"),
            all_calls: stats
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, _)| *k != "rejected")
                        .filter_map(|(_, v)| v.as_u64())
                        .sum()
                })
                .unwrap_or(0),
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// Times of one cold start, from spawning the process.
struct ColdStart {
    listening: Duration,
    first_token: Duration,
}

struct Sidecar {
    child: Child,
    addr: SocketAddr,
}

impl Sidecar {
    /// Spawns our binary on a free port with metadata-server credentials (the fake's) and an
    /// empty HOME, as on Compute Engine or Dataflow, and times it.
    fn cold_start(bin: &Path, fake: &Fake, home: &Path) -> (Sidecar, ColdStart) {
        std::fs::create_dir_all(home).expect("create HOME");
        let addr = free_port();
        let started = Instant::now();
        let child = Command::new(bin)
            .args(["serve", "--port", &addr.port().to_string()])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("GCE_METADATA_HOST", &fake.metadata_host)
            .env("GCP_KAFKA_AUTH_TOKENINFO_URL", &fake.tokeninfo_url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gcp-kafka-auth-handler");
        let mut sidecar = Sidecar { child, addr };
        let listening = wait_for_listener(addr, started, &mut sidecar.child);
        let (status, body) = http(addr, "POST", "/", "grant_type=client_credentials");
        let first_token = started.elapsed();
        assert_eq!(
            status,
            200,
            "first token: {}",
            String::from_utf8_lossy(&body)
        );
        (
            sidecar,
            ColdStart {
                listening,
                first_token,
            },
        )
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        terminate(&mut self.child);
    }
}

struct Baseline {
    child: Child,
    addr: SocketAddr,
}

impl Baseline {
    /// Starts the baseline and returns it with the time from spawning to listening: the floor
    /// for process start-up on this machine at this moment.
    fn start(bin: &Path, body_bytes: usize) -> (Baseline, Duration) {
        let addr = free_port();
        let started = Instant::now();
        let child = Command::new(bin)
            .args(["--port", &addr.port().to_string()])
            .args(["--body-bytes", &body_bytes.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the baseline server");
        let mut baseline = Baseline { child, addr };
        let listening = wait_for_listener(addr, started, &mut baseline.child);
        let (status, body) = http(addr, "POST", "/", "grant_type=client_credentials");
        assert_eq!((status, body.len()), (200, body_bytes));
        (baseline, listening)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        terminate(&mut self.child);
    }
}

/// Polls `addr` every 100 µs until it accepts a connection; the time since `started`.
fn wait_for_listener(addr: SocketAddr, started: Instant, child: &mut Child) -> Duration {
    loop {
        if TcpStream::connect(addr).is_ok() {
            return started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(10) || child.try_wait().ok().flatten().is_some()
        {
            terminate(child);
            panic!("{addr} did not accept connections within 10 s of the process start");
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// SIGTERM, then wait; a process that is gone already is fine.
fn terminate(child: &mut Child) {
    if child.try_wait().ok().flatten().is_none() {
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// A port nobody listens on right now.
fn free_port() -> SocketAddr {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("set a timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send the request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read the response");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, response[split + 4..].to_vec())
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    utime + stime
}

/// A `kB` (or plain count) line of `/proc/<pid>/status`.
fn status_kb(pid: u32, key: &str) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100)
}

fn file_mb(path: &Path) -> f64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) as f64 / 1e6
}

/// Date, machine and tools, for the record.
fn machine() -> serde_json::Value {
    let run = |program: &str, args: &[&str]| -> String {
        Command::new(program)
            .args(args)
            .output()
            .map(|o| {
                let text = String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr);
                text.lines().next().unwrap_or("").trim().to_owned()
            })
            .unwrap_or_else(|e| format!("unknown ({e})"))
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    serde_json::json!({
        "date": run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        "cpus": cores,
        "cpu": cpu,
        "kernel": run("uname", &["-r"]),
        "load_generator": run("wrk", &["--version"]),
        "load_end": load_average(),
        "commit": commit(),
    })
}

/// The commit `run.sh` built the binaries from, `-dirty` when the sources had uncommitted
/// changes (bench/results/ aside).
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let head = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = git(&["status", "--porcelain", "--", ".", ":!bench/results"]);
    if dirty.is_empty() {
        head
    } else {
        head + "-dirty"
    }
}

/// The 1-, 5- and 15-minute load averages.
fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut fields = text
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(f64::NAN));
    [(); 3].map(|()| fields.next().unwrap_or(f64::NAN))
}
