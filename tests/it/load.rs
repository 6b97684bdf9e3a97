//! Load on the real binary: 1,000 connections held open at once, then a burst of 10,000
//! requests over them. Every answer must be the token; the sidecar's peak memory is read from
//! `/proc`.

use std::sync::Arc;
use std::time::Instant;

use crate::support::{Sidecar, SidecarEnv, memory_kib, read_response};
use fake_google::FakeGoogle;
use tokio::io::{AsyncWriteExt as _, BufReader};
use tokio::sync::Barrier;

const CONNECTIONS: usize = 1_000;
const BURST_PER_CONNECTION: usize = 10;
/// Peak RSS allowed (debug build; the release binary needs far less).
const MAX_PEAK_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections_and_a_burst_all_get_the_token() {
    let fake = FakeGoogle::start().await;
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    sidecar.wait_ready().await;
    let (rss_idle, _) = memory_kib(sidecar.pid());
    let request = b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 29\r\n\r\ngrant_type=client_credentials";
    let all_open = Arc::new(Barrier::new(CONNECTIONS));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let addr = sidecar.addr;
        let all_open = all_open.clone();
        tasks.spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            let mut tokens = Vec::with_capacity(BURST_PER_CONNECTION + 1);
            write.write_all(request).await.unwrap();
            tokens.push(read_response(&mut read).await);
            // Every connection is open and has been answered before the burst starts.
            all_open.wait().await;
            for _ in 0..BURST_PER_CONNECTION {
                write.write_all(request).await.unwrap();
                tokens.push(read_response(&mut read).await);
            }
            tokens
        });
    }
    let mut answered = 0;
    let mut first_token = None;
    while let Some(result) = tasks.join_next().await {
        for response in result.unwrap() {
            assert_eq!(response.status, 200, "{response:?}");
            let body = response.json();
            let token = body["access_token"].as_str().unwrap().to_owned();
            assert_eq!(token.split('.').filter(|p| !p.is_empty()).count(), 3);
            assert_eq!(first_token.get_or_insert_with(|| token.clone()), &token);
            answered += 1;
        }
    }
    let took = started.elapsed();
    let (rss_after, peak) = memory_kib(sidecar.pid());
    eprintln!(
        "load: {CONNECTIONS} connections, {answered} requests in {took:?}; sidecar RSS idle {rss_idle} KiB, after {rss_after} KiB, peak {peak} KiB"
    );
    assert_eq!(answered, CONNECTIONS * (BURST_PER_CONNECTION + 1));
    assert!(peak < MAX_PEAK_KIB, "peak RSS {peak} KiB");
    // One upstream token for all of it.
    assert_eq!(fake.stats().metadata_token, 1);
}
