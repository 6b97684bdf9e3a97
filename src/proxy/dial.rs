//! Dialling brokers through a forward proxy, for laptops outside the cluster's VPC: a SOCKS5
//! proxy (RFC 1928, username/password per RFC 1929; `ssh -D`, IAP tunnels, bastions) or an
//! HTTP proxy's `CONNECT` (RFC 9110 §9.3.6).
//!
//! Broker host names are sent to the proxy unresolved (SOCKS5 address type DOMAINNAME,
//! `CONNECT host:port`): Managed Kafka's names resolve only inside the VPC. A `--resolve`
//! entry still wins, and its IP is sent instead.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

/// Which protocol the forward proxy speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardKind {
    /// SOCKS5 (`socks5://`, also `socks5h://`).
    Socks5,
    /// HTTP `CONNECT` (`http://`).
    HttpConnect,
}

/// A forward proxy the broker connections go through.
#[derive(Clone, PartialEq, Eq)]
pub struct ForwardProxy {
    /// The protocol.
    pub kind: ForwardKind,
    /// `HOST:PORT` of the proxy.
    pub address: String,
    credentials: Option<(String, String)>,
}

impl fmt::Debug for ForwardProxy {
    // The password is a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardProxy")
            .field("kind", &self.kind)
            .field("address", &self.address)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl fmt::Display for ForwardProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.kind {
            ForwardKind::Socks5 => "socks5",
            ForwardKind::HttpConnect => "http",
        };
        write!(f, "{scheme}://{}", self.address)
    }
}

/// A forward proxy URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "forward proxy URL `{text}`: {why}; write socks5://HOST:PORT or http://HOST:PORT (optionally USER:PASSWORD@ before the host)"
)]
pub struct BadForwardProxy {
    /// What was given, without the password.
    pub text: String,
    /// What is wrong.
    pub why: &'static str,
}

impl FromStr for ForwardProxy {
    type Err = BadForwardProxy;

    fn from_str(text: &str) -> Result<Self, BadForwardProxy> {
        let shown = match text.split_once('@') {
            Some((before, after)) => match before.rsplit_once(':') {
                Some((user, _)) if before.contains("://") => format!("{user}:***@{after}"),
                _ => text.to_owned(),
            },
            None => text.to_owned(),
        };
        let bad = |why| BadForwardProxy {
            text: shown.clone(),
            why,
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "socks5" | "socks5h" => ForwardKind::Socks5,
            "http" => ForwardKind::HttpConnect,
            _ => return Err(bad("the scheme must be socks5 or http")),
        };
        let rest = rest.trim_end_matches('/');
        let (credentials, address) = match rest.rsplit_once('@') {
            Some((userinfo, address)) => {
                let (user, pass) = userinfo
                    .split_once(':')
                    .ok_or_else(|| bad("credentials must be USER:PASSWORD"))?;
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8()
                        .map(|c| c.into_owned())
                };
                let user = decode(user).map_err(|_| bad("the user is not UTF-8"))?;
                let pass = decode(pass).map_err(|_| bad("the password is not UTF-8"))?;
                if user.len() > 255 || pass.len() > 255 {
                    return Err(bad("SOCKS5 user and password are at most 255 bytes"));
                }
                (Some((user, pass)), address)
            }
            None => (None, rest),
        };
        let port_ok = address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
        });
        if !port_ok || address.contains('/') {
            return Err(bad("the proxy address must be HOST:PORT"));
        }
        Ok(ForwardProxy {
            kind,
            address: address.to_owned(),
            credentials,
        })
    }
}

impl ForwardProxy {
    /// Opens a TCP connection to `host:port` through the proxy; the stream is then the
    /// broker's (TLS goes on top, end to end).
    pub async fn connect(&self, host: &str, port: u16) -> std::io::Result<TcpStream> {
        let mut stream = TcpStream::connect(&self.address).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot connect to the forward proxy {self}: {e}"),
            )
        })?;
        let _ = stream.set_nodelay(true);
        match self.kind {
            ForwardKind::Socks5 => self.socks5(&mut stream, host, port).await?,
            ForwardKind::HttpConnect => {
                return self.http_connect(stream, host, port).await;
            }
        }
        Ok(stream)
    }

    async fn socks5(&self, stream: &mut TcpStream, host: &str, port: u16) -> std::io::Result<()> {
        let fail = |why: String| std::io::Error::other(format!("forward proxy {self}: {why}"));
        // Greeting: version 5, the methods offered.
        let methods: &[u8] = if self.credentials.is_some() {
            &[0x00, 0x02]
        } else {
            &[0x00]
        };
        let mut hello = vec![0x05, methods.len() as u8];
        hello.extend_from_slice(methods);
        stream.write_all(&hello).await?;
        let mut choice = [0u8; 2];
        stream.read_exact(&mut choice).await?;
        if choice[0] != 0x05 {
            return Err(fail(format!(
                "not a SOCKS5 proxy (version byte {})",
                choice[0]
            )));
        }
        match (choice[1], &self.credentials) {
            (0x00, _) => {}
            (0x02, Some((user, pass))) => {
                let mut auth = vec![0x01, user.len() as u8];
                auth.extend_from_slice(user.as_bytes());
                auth.push(pass.len() as u8);
                auth.extend_from_slice(pass.as_bytes());
                stream.write_all(&auth).await?;
                let mut status = [0u8; 2];
                stream.read_exact(&mut status).await?;
                if status[1] != 0x00 {
                    return Err(fail("refused the user name and password".to_owned()));
                }
            }
            (0xff, None) => {
                return Err(fail(
                    "demands authentication: put USER:PASSWORD@ in the forward proxy's URL"
                        .to_owned(),
                ));
            }
            (other, _) => return Err(fail(format!("chose an unsupported method {other:#04x}"))),
        }
        // CONNECT to an IP literal (from --resolve) or a domain name.
        let mut request = vec![0x05, 0x01, 0x00];
        match host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(ip)) => {
                request.push(0x01);
                request.extend_from_slice(&ip.octets());
            }
            Ok(std::net::IpAddr::V6(ip)) => {
                request.push(0x04);
                request.extend_from_slice(&ip.octets());
            }
            Err(_) => {
                let name = host.as_bytes();
                if name.len() > 255 {
                    return Err(fail(format!("host name {host} is longer than 255 bytes")));
                }
                request.push(0x03);
                request.push(name.len() as u8);
                request.extend_from_slice(name);
            }
        }
        request.extend_from_slice(&port.to_be_bytes());
        stream.write_all(&request).await?;
        let mut reply = [0u8; 4];
        stream.read_exact(&mut reply).await?;
        if reply[1] != 0x00 {
            let why = match reply[1] {
                0x01 => "general failure",
                0x02 => "connection not allowed by ruleset",
                0x03 => "network unreachable",
                0x04 => "host unreachable",
                0x05 => "connection refused",
                0x06 => "TTL expired",
                0x07 => "command not supported",
                0x08 => "address type not supported",
                _ => "unknown error",
            };
            return Err(fail(format!(
                "cannot reach {host}:{port}: {why} (SOCKS5 reply {})",
                reply[1]
            )));
        }
        // The bound address, which nobody needs.
        let skip = match reply[3] {
            0x01 => 4,
            0x04 => 16,
            0x03 => {
                let mut len = [0u8; 1];
                stream.read_exact(&mut len).await?;
                usize::from(len[0])
            }
            other => return Err(fail(format!("answered address type {other}"))),
        };
        let mut rest = vec![0u8; skip + 2];
        stream.read_exact(&mut rest).await?;
        Ok(())
    }

    async fn http_connect(
        &self,
        stream: TcpStream,
        host: &str,
        port: u16,
    ) -> std::io::Result<TcpStream> {
        let fail = |why: String| std::io::Error::other(format!("forward proxy {self}: {why}"));
        let authority = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some((user, pass)) = &self.credentials {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            request.push_str(&format!("Proxy-Authorization: Basic {basic}\r\n"));
        }
        request.push_str("\r\n");
        let mut reader = BufReader::new(stream);
        reader.get_mut().write_all(request.as_bytes()).await?;
        let mut status = String::new();
        reader.read_line(&mut status).await?;
        let code = status
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        // Headers up to the blank line; bounded so a broken proxy cannot feed us forever.
        let mut total = 0usize;
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).await?;
            total += n;
            if n == 0 || line == "\r\n" || line == "\n" {
                break;
            }
            if total > 64 * 1024 {
                return Err(fail("sent more than 64 KiB of headers".to_owned()));
            }
        }
        if !code.starts_with('2') {
            let hint = if code == "407" {
                " (put USER:PASSWORD@ in the forward proxy's URL)"
            } else {
                ""
            };
            return Err(fail(format!(
                "CONNECT {authority} answered `{}`{hint}",
                status.trim()
            )));
        }
        if !reader.buffer().is_empty() {
            return Err(fail("sent bytes after the CONNECT answer".to_owned()));
        }
        Ok(reader.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_passwords_stay_hidden() {
        let p: ForwardProxy = "socks5://me:s%40cret@127.0.0.1:1080".parse().unwrap();
        assert_eq!(p.kind, ForwardKind::Socks5);
        assert_eq!(p.address, "127.0.0.1:1080");
        assert_eq!(p.credentials, Some(("me".to_owned(), "s@cret".to_owned())));
        assert_eq!(
            format!("{p:?}"),
            r#"ForwardProxy { kind: Socks5, address: "127.0.0.1:1080", user: Some("me") }"#
        );
        assert_eq!(p.to_string(), "socks5://127.0.0.1:1080");
        let h: ForwardProxy = "http://bastion:3128/".parse().unwrap();
        assert_eq!(h.kind, ForwardKind::HttpConnect);
        assert_eq!(h.address, "bastion:3128");

        let err = "ftp://me:hunter2@x:1".parse::<ForwardProxy>().unwrap_err();
        assert_eq!(err.why, "the scheme must be socks5 or http");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert_eq!(
            "socks5://host".parse::<ForwardProxy>().unwrap_err().why,
            "the proxy address must be HOST:PORT"
        );
    }
}
