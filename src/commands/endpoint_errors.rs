//! The token endpoint's and the server's answers in the binary's words. The library names its
//! own settings (`EndpointConfig::with_allowed_host`, "pick another port"); the binary's users
//! set them with flags, so here each typed refusal or error whose fix is a setting names the
//! flag instead, as `proxy_errors.rs` does for the proxy. Every `EndpointConfig` the binary
//! serves with starts from [`endpoint_config`], so its refusals take this wording. The flags
//! differ by command ([`Port`]): only `serve` has `--port` and `--bind`, and `proxy` has no
//! `--allowed-host`, so its refusals say what the client can do instead.

use std::io;
use std::net::IpAddr;

use gcp_kafka_auth_handler::endpoint::{ConfigRefusal, EndpointConfig};
use gcp_kafka_auth_handler::server::{self, PortTaken};
use tokio::net::TcpListener;

/// Which command's port a refusal or a taken port comes from: each names the flags *that*
/// command has (only `serve` has `--port` and `--bind`; `proxy` has no `--allowed-host`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// `serve`'s token endpoint: `--port`, `--bind`, `--allowed-host`.
    Serve,
    /// `schema-registry`'s endpoint: `--listen`, `--allowed-host`.
    SchemaRegistry,
    /// `serve --schema-registry`: `--schema-registry-listen`, and serve's `--allowed-host`.
    ServeSchemaRegistry,
    /// `proxy --schema-registry`: `--schema-registry-listen`, no `--allowed-host`.
    ProxySchemaRegistry,
    /// `proxy`'s Kafka bootstrap listener: `--listen` (it answers no HTTP).
    ProxyListen,
    /// `proxy --token-endpoint`: no `--allowed-host`.
    ProxyTokenEndpoint,
    /// `proxy`'s health port: `--http-address`, `--http-port`.
    ProxyHealth,
    /// `proxy`'s admin port: `--admin-port` on 127.0.0.1.
    ProxyAdmin,
}

/// The default checks (loopback `Host`s only, browsers refused), refusing in the words of
/// the command serving `port`.
pub fn endpoint_config(port: Port) -> EndpointConfig {
    // The library takes a function pointer: one non-capturing closure per port.
    let wording: fn(&ConfigRefusal) -> String = match port {
        Port::Serve => |r| refusal(Port::Serve, r),
        Port::SchemaRegistry => |r| refusal(Port::SchemaRegistry, r),
        Port::ServeSchemaRegistry => |r| refusal(Port::ServeSchemaRegistry, r),
        Port::ProxySchemaRegistry => |r| refusal(Port::ProxySchemaRegistry, r),
        Port::ProxyListen => |r| refusal(Port::ProxyListen, r),
        Port::ProxyTokenEndpoint => |r| refusal(Port::ProxyTokenEndpoint, r),
        Port::ProxyHealth => |r| refusal(Port::ProxyHealth, r),
        Port::ProxyAdmin => |r| refusal(Port::ProxyAdmin, r),
    };
    EndpointConfig::default().with_refusal_wording(wording)
}

/// [`endpoint_config`] for a port listening on `ip`: a specific address other hosts reach is
/// allowed as a `Host` too, since clients that reach the port by that IP must be able to use
/// it and an IP literal cannot be rebound by DNS (loopback and unspecified addresses add
/// nothing: loopback names are allowed already, and `0.0.0.0` is no name a client uses).
pub fn endpoint_config_on(port: Port, ip: IpAddr) -> EndpointConfig {
    let config = endpoint_config(port);
    if ip.is_loopback() || ip.is_unspecified() {
        config
    } else {
        config.with_allowed_host(ip.to_string())
    }
}

/// A refusal whose fix is a setting, naming the flag that sets it, or, where the command
/// has none, what the client can do instead.
fn refusal(port: Port, refusal: &ConfigRefusal) -> String {
    match refusal {
        ConfigRefusal::HostNotAllowed { host } => host_not_allowed(port, host),
        ConfigRefusal::ClientCredentialsMismatch => {
            "the client id or secret does not match the sidecar's --client-id/--client-secret"
                .to_owned()
        }
        other => other.to_string(),
    }
}

fn host_not_allowed(port: Port, host: &str) -> String {
    let fix = match port {
        Port::Serve | Port::SchemaRegistry | Port::ServeSchemaRegistry => {
            return format!(
                "Host `{host}` is not a loopback name or address; to answer it, start the sidecar with --allowed-host (GCP_KAFKA_AUTH_ALLOWED_HOSTS)"
            );
        }
        Port::ProxySchemaRegistry => {
            "use localhost, 127.0.0.1 or the --schema-registry-listen address in the URL, or serve the registry with `schema-registry --allowed-host`"
        }
        Port::ProxyTokenEndpoint => {
            "use localhost, 127.0.0.1 or the --token-endpoint address in the URL, or serve tokens with `serve --allowed-host`"
        }
        Port::ProxyHealth => "use localhost or the --http-address in the URL",
        Port::ProxyAdmin => "use 127.0.0.1 or localhost in the URL",
        Port::ProxyListen => "use localhost or the --listen address",
    };
    format!(
        "Host `{host}` is not a loopback name or address, and proxy has no --allowed-host to answer it: {fix}"
    )
}

/// [`server::bind_loopback`], a taken port naming the flags of the command serving `port`
/// that avoid it.
pub async fn bind_loopback(port: u16, serving: Port) -> io::Result<Vec<TcpListener>> {
    server::bind_loopback(port)
        .await
        .map_err(|e| bind_error(e, serving))
}

fn bind_error(err: io::Error, serving: Port) -> io::Error {
    match err.get_ref().and_then(|e| e.downcast_ref::<PortTaken>()) {
        Some(taken) => io::Error::new(err.kind(), port_taken(taken, serving)),
        None => err,
    }
}

fn port_taken(taken: &PortTaken, serving: Port) -> String {
    let PortTaken { addr } = taken;
    // Token requests may carry client secrets; Kafka and registry clients send the proxy or
    // the endpoint none (they add the credentials), but a squatter still takes their traffic.
    let squatter = match serving {
        Port::Serve | Port::ProxyTokenEndpoint => "to receive client secrets",
        _ => "to intercept its clients",
    };
    let fix = match serving {
        Port::Serve => "pick another --port, or pass --bind to listen on one address only",
        Port::SchemaRegistry | Port::ProxyListen => "or pick another port with --listen",
        Port::ServeSchemaRegistry | Port::ProxySchemaRegistry => {
            "or pick another port with --schema-registry-listen"
        }
        Port::ProxyTokenEndpoint => "or pick another port with --token-endpoint=ADDR:PORT",
        Port::ProxyHealth => "or pick another --http-port",
        Port::ProxyAdmin => "or pick another --admin-port",
    };
    format!(
        "cannot listen on {addr}: another process holds it (an earlier sidecar, or one squatting the port {squatter}: find it with `ss -ltnp 'sport = :{port}'`); stop it, {fix}",
        port = addr.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn host_status(config: EndpointConfig, host: &str) -> http::StatusCode {
        use tower::ServiceExt as _;
        let app = gcp_kafka_auth_handler::endpoint::protect(axum::Router::new(), config);
        let request = http::Request::get("/")
            .header(http::header::HOST, host)
            .body(axum::body::Body::empty())
            .unwrap();
        app.oneshot(request).await.unwrap().status()
    }

    /// A token endpoint on a specific remote-reachable IP answers requests addressed to that
    /// IP (an empty router: 404 means the `Host` check let it through) and still refuses
    /// other names; on loopback only loopback names pass.
    #[tokio::test]
    async fn token_endpoint_answers_the_ip_it_listens_on() {
        let on = |ip: &str| endpoint_config_on(Port::ProxyTokenEndpoint, ip.parse().unwrap());
        let remote = on("10.0.0.7");
        assert_eq!(
            host_status(remote.clone(), "10.0.0.7:14293").await,
            http::StatusCode::NOT_FOUND
        );
        assert_eq!(
            host_status(remote.clone(), "localhost:14293").await,
            http::StatusCode::NOT_FOUND
        );
        assert_eq!(
            host_status(remote, "10.0.0.8:14293").await,
            http::StatusCode::FORBIDDEN
        );
        assert_eq!(
            host_status(on("127.0.0.1"), "10.0.0.7:14293").await,
            http::StatusCode::FORBIDDEN
        );
        assert_eq!(
            host_status(on("0.0.0.0"), "10.0.0.7:14293").await,
            http::StatusCode::FORBIDDEN
        );
    }

    const ALL: [Port; 8] = [
        Port::Serve,
        Port::SchemaRegistry,
        Port::ServeSchemaRegistry,
        Port::ProxySchemaRegistry,
        Port::ProxyListen,
        Port::ProxyTokenEndpoint,
        Port::ProxyHealth,
        Port::ProxyAdmin,
    ];

    fn host_refusal(port: Port) -> String {
        refusal(
            port,
            &ConfigRefusal::HostNotAllowed {
                host: "evil.example:8081".to_owned(),
            },
        )
    }

    #[test]
    fn host_refusals_name_the_flag_of_the_command_or_what_to_do_instead() {
        // serve, schema-registry and serve --schema-registry (which takes serve's
        // --allowed-host) have the flag.
        for port in [Port::Serve, Port::SchemaRegistry, Port::ServeSchemaRegistry] {
            assert_eq!(
                host_refusal(port),
                "Host `evil.example:8081` is not a loopback name or address; to answer it, start the sidecar with --allowed-host (GCP_KAFKA_AUTH_ALLOWED_HOSTS)",
                "{port:?}"
            );
        }
        // proxy has none.
        assert_eq!(
            host_refusal(Port::ProxyTokenEndpoint),
            "Host `evil.example:8081` is not a loopback name or address, and proxy has no --allowed-host to answer it: use localhost, 127.0.0.1 or the --token-endpoint address in the URL, or serve tokens with `serve --allowed-host`"
        );
        assert_eq!(
            host_refusal(Port::ProxySchemaRegistry),
            "Host `evil.example:8081` is not a loopback name or address, and proxy has no --allowed-host to answer it: use localhost, 127.0.0.1 or the --schema-registry-listen address in the URL, or serve the registry with `schema-registry --allowed-host`"
        );
        assert_eq!(
            host_refusal(Port::ProxyHealth),
            "Host `evil.example:8081` is not a loopback name or address, and proxy has no --allowed-host to answer it: use localhost or the --http-address in the URL"
        );
        assert_eq!(
            host_refusal(Port::ProxyAdmin),
            "Host `evil.example:8081` is not a loopback name or address, and proxy has no --allowed-host to answer it: use 127.0.0.1 or localhost in the URL"
        );
        assert_eq!(
            host_refusal(Port::ProxyListen),
            "Host `evil.example:8081` is not a loopback name or address, and proxy has no --allowed-host to answer it: use localhost or the --listen address"
        );
        for port in ALL {
            assert_eq!(
                refusal(port, &ConfigRefusal::ClientCredentialsMismatch),
                "the client id or secret does not match the sidecar's --client-id/--client-secret"
            );
        }
    }

    /// The wording `endpoint_config` installs is the one for its port (the library takes a
    /// function pointer, one per port): a foreign `Host` through `endpoint::protect`.
    #[tokio::test]
    async fn endpoint_config_words_refusals_for_its_port() {
        use tower::ServiceExt as _;
        for port in ALL {
            let app = gcp_kafka_auth_handler::endpoint::protect(
                axum::Router::new(),
                endpoint_config(port),
            );
            let request = http::Request::get("/")
                .header(http::header::HOST, "evil.example:8081")
                .body(axum::body::Body::empty())
                .unwrap();
            let response = app.oneshot(request).await.unwrap();
            assert_eq!(response.status(), http::StatusCode::FORBIDDEN, "{port:?}");
            let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                body["error_description"],
                host_refusal(port).as_str(),
                "{port:?}: {body}"
            );
        }
    }

    fn taken(port: Port) -> String {
        let addr = "127.0.0.1:9092".parse().unwrap();
        port_taken(&PortTaken { addr }, port)
    }

    #[test]
    fn a_taken_port_names_the_flags_of_the_command() {
        const HELD: &str = "cannot listen on 127.0.0.1:9092: another process holds it (an earlier sidecar, or one squatting the port";
        const FIND: &str = "find it with `ss -ltnp 'sport = :9092'`); stop it";
        let cases = [
            (
                Port::Serve,
                "to receive client secrets",
                ", pick another --port, or pass --bind to listen on one address only",
            ),
            (
                Port::ProxyTokenEndpoint,
                "to receive client secrets",
                ", or pick another port with --token-endpoint=ADDR:PORT",
            ),
            (
                Port::ProxyListen,
                "to intercept its clients",
                ", or pick another port with --listen",
            ),
            (
                Port::SchemaRegistry,
                "to intercept its clients",
                ", or pick another port with --listen",
            ),
            (
                Port::ServeSchemaRegistry,
                "to intercept its clients",
                ", or pick another port with --schema-registry-listen",
            ),
            (
                Port::ProxySchemaRegistry,
                "to intercept its clients",
                ", or pick another port with --schema-registry-listen",
            ),
            (
                Port::ProxyHealth,
                "to intercept its clients",
                ", or pick another --http-port",
            ),
            (
                Port::ProxyAdmin,
                "to intercept its clients",
                ", or pick another --admin-port",
            ),
        ];
        assert_eq!(cases.len(), ALL.len());
        for (port, squatter, fix) in cases {
            assert_eq!(
                taken(port),
                format!("{HELD} {squatter}: {FIND}{fix}"),
                "{port:?}"
            );
        }
        // serve's, whole, as docs/security.md quotes it.
        assert_eq!(
            taken(Port::Serve),
            "cannot listen on 127.0.0.1:9092: another process holds it (an earlier sidecar, or one squatting the port to receive client secrets: find it with `ss -ltnp 'sport = :9092'`); stop it, pick another --port, or pass --bind to listen on one address only"
        );
        assert_eq!(
            taken(Port::ProxyListen),
            "cannot listen on 127.0.0.1:9092: another process holds it (an earlier sidecar, or one squatting the port to intercept its clients: find it with `ss -ltnp 'sport = :9092'`); stop it, or pick another port with --listen"
        );
    }

    #[tokio::test]
    async fn a_taken_port_is_worded_for_its_command_and_other_errors_keep_their_text() {
        let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = squatter.local_addr().unwrap();
        for port in ALL {
            let err = bind_loopback(addr.port(), port).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
            assert_eq!(
                err.to_string(),
                port_taken(&PortTaken { addr }, port),
                "{port:?}"
            );
        }
        // Other errors keep the library's text.
        let other = io::Error::new(io::ErrorKind::PermissionDenied, "cannot listen on x: no");
        assert_eq!(
            bind_error(other, Port::ProxyListen).to_string(),
            "cannot listen on x: no"
        );
    }
}
