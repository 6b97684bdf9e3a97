//! The token endpoint's and the server's answers in the binary's words. The library names its
//! own settings (`EndpointConfig::with_allowed_host`, "pick another port"); the binary's users
//! set them with flags, so here each typed refusal or error whose fix is a setting names the
//! flag instead, as `proxy_errors.rs` does for the proxy. Every `EndpointConfig` the binary
//! serves with starts from [`endpoint_config`], so its refusals take this wording.

use std::io;

use gcp_kafka_auth_handler::endpoint::{ConfigRefusal, EndpointConfig};
use gcp_kafka_auth_handler::server::{self, PortTaken};
use tokio::net::TcpListener;

/// The default checks (loopback `Host`s only, browsers refused), refusing in the binary's
/// words.
pub fn endpoint_config() -> EndpointConfig {
    EndpointConfig::default().with_refusal_wording(refusal)
}

/// A refusal whose fix is a setting, naming the flag that sets it.
fn refusal(refusal: &ConfigRefusal) -> String {
    match refusal {
        ConfigRefusal::HostNotAllowed { host } => format!(
            "Host `{host}` is not a loopback name or address; to answer it, start the sidecar with --allowed-host (GCP_KAFKA_AUTH_ALLOWED_HOSTS)"
        ),
        ConfigRefusal::ClientCredentialsMismatch => {
            "the client id or secret does not match the sidecar's --client-id/--client-secret"
                .to_owned()
        }
        other => other.to_string(),
    }
}

/// [`server::bind_loopback`], a taken port naming the flags that avoid it.
pub async fn bind_loopback(port: u16) -> io::Result<Vec<TcpListener>> {
    server::bind_loopback(port).await.map_err(bind_error)
}

fn bind_error(err: io::Error) -> io::Error {
    match err.get_ref().and_then(|e| e.downcast_ref::<PortTaken>()) {
        Some(taken) => io::Error::new(err.kind(), port_taken(taken)),
        None => err,
    }
}

fn port_taken(taken: &PortTaken) -> String {
    let PortTaken { addr } = taken;
    format!(
        "cannot listen on {addr}: another process holds it (an earlier sidecar, or one squatting the port to receive client secrets: find it with `ss -ltnp 'sport = :{port}'`); stop it, pick another --port, or pass --bind to listen on one address only",
        port = addr.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_flags() {
        assert_eq!(
            refusal(&ConfigRefusal::HostNotAllowed {
                host: "evil.example:8081".to_owned()
            }),
            "Host `evil.example:8081` is not a loopback name or address; to answer it, start the sidecar with --allowed-host (GCP_KAFKA_AUTH_ALLOWED_HOSTS)"
        );
        assert_eq!(
            refusal(&ConfigRefusal::ClientCredentialsMismatch),
            "the client id or secret does not match the sidecar's --client-id/--client-secret"
        );
    }

    #[tokio::test]
    async fn a_taken_port_names_port_and_bind() {
        let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = squatter.local_addr().unwrap();
        let err = bind_loopback(addr.port()).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(
            err.to_string(),
            format!(
                "cannot listen on {addr}: another process holds it (an earlier sidecar, or one squatting the port to receive client secrets: find it with `ss -ltnp 'sport = :{port}'`); stop it, pick another --port, or pass --bind to listen on one address only",
                port = addr.port()
            )
        );
        // Other errors keep the library's text.
        let other = io::Error::new(io::ErrorKind::PermissionDenied, "cannot listen on x: no");
        assert_eq!(bind_error(other).to_string(), "cannot listen on x: no");
    }
}
