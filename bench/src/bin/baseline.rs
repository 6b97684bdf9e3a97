//! The physical limit: a bare hyper HTTP/1.1 server that answers every request with a fixed
//! body of the size of our token response and the same headers, and does nothing else.
//!
//! `baseline --port P --body-bytes N`. Prints `listening` on stdout once bound. It reads and
//! drops the request body, as a real server must, but routes and parses nothing.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, PRAGMA};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() {
    let mut port = 0u16;
    let mut body_bytes = 1000usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--port" => port = value.parse().expect("--port takes a port number"),
            "--body-bytes" => body_bytes = value.parse().expect("--body-bytes takes a size"),
            other => panic!("unknown flag {other}; usage: baseline --port P --body-bytes N"),
        }
    }
    let body = fixed_body(body_bytes);
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .expect("bind 127.0.0.1");
    println!(
        "listening {}",
        listener.local_addr().expect("bound address")
    );
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let body = body.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let body = body.clone();
                async move {
                    // Drain the request body like any server answering a POST.
                    let _ = request.into_body().collect().await;
                    let mut response = Response::new(Full::new(body));
                    let headers = response.headers_mut();
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A JSON object of exactly `len` bytes (at least 8).
fn fixed_body(len: usize) -> Bytes {
    let prefix = br#"{"x":""#;
    let suffix = br#""}"#;
    let fill = len.saturating_sub(prefix.len() + suffix.len());
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(prefix);
    body.resize(prefix.len() + fill, b'a');
    body.extend_from_slice(suffix);
    Bytes::from(body)
}
