//! The ports `proxy` serves beside its Kafka listeners: the health port (`/startup`,
//! `/readiness`, `/liveness`, `/metrics`, the library's `HealthPort` behind the address's
//! `Host` check), the opt-in admin port (`POST /quitquitquit`), and, from the proxies' own
//! provider and token cache, `--token-endpoint` and `--schema-registry`. Apart from
//! `proxy.rs`, which only says when each is opened: the health and admin ports before the
//! provider is built (a probe gets an answer while credentials load), the others with it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use gcp_kafka_auth_handler::proxy::{HealthPort, ProxyStatus};
use gcp_kafka_auth_handler::{KafkaTokenProvider, endpoint, server};
use tokio::task::JoinHandle;

use crate::commands::endpoint_errors::Port;
use crate::commands::proxy_args::ProxyArgs;
use crate::commands::proxy_listen::bind;
use crate::commands::proxy_stop::Stop;
use crate::commands::schema_registry;
use crate::commands::{endpoint_errors, proxy_errors};

/// The servers running beside the proxies, to be awaited when they stop.
pub struct Ports {
    health: HealthPort,
    ops: JoinHandle<std::io::Result<()>>,
    admin: Option<JoinHandle<std::io::Result<()>>>,
    token: Option<JoinHandle<std::io::Result<()>>>,
    registry: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Ports {
    /// Binds and serves the health port and, with `--quitquitquit`, the admin port. The
    /// health port answers "not ready" until [`Ports::set_proxies`].
    pub async fn open(args: &ProxyArgs, stop: &Stop) -> anyhow::Result<Self> {
        let http_addr = SocketAddr::new(args.http_address, args.http_port);
        let http = tokio::net::TcpListener::bind(http_addr)
            .await
            .with_context(|| format!("cannot listen on --http-address/--http-port {http_addr}"))?;
        let admin = if args.quitquitquit {
            let addr = SocketAddr::from(([127, 0, 0, 1], args.admin_port));
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on --admin-port {addr}"))?;
            tracing::info!(target: super::PROXY_LOG_TARGET, address = %listener.local_addr()?, "admin server: POST http://{}/quitquitquit stops the proxy", listener.local_addr()?);
            Some(tokio::spawn(server::serve(
                vec![listener],
                endpoint::protect(
                    stop.admin_router(),
                    endpoint_errors::endpoint_config(Port::ProxyAdmin),
                ),
                server::Limits {
                    max_connections: 8,
                    ..server::Limits::default()
                },
                stop.stopped(),
                Duration::from_secs(1),
            )))
        } else {
            None
        };
        let health = HealthPort::new();
        health.set_not_ready_wording(proxy_errors::not_ready);
        let http_local = http.local_addr()?;
        tracing::info!(target: super::PROXY_LOG_TARGET, address = %http_local, "listening for health checks and metrics: http://{http_local}/readyz");
        // Loopback: the token endpoint's Host check against DNS rebinding. Elsewhere (a pod's
        // address, for kubelet probes) any Host, but browsers are refused everywhere.
        let ops_guard = if args.http_address.is_loopback() {
            endpoint_errors::endpoint_config(Port::ProxyHealth)
        } else {
            endpoint_errors::endpoint_config(Port::ProxyHealth).allow_any_host()
        };
        let ops = tokio::spawn(server::serve(
            vec![http],
            endpoint::protect(health.router(), ops_guard),
            server::Limits {
                max_connections: 64,
                ..server::Limits::default()
            },
            stop.stopped(),
            Duration::from_secs(1),
        ));
        Ok(Self {
            health,
            ops,
            admin,
            token: None,
            registry: None,
        })
    }

    /// With the provider built: its metrics on the health port, and `--token-endpoint` and
    /// `--schema-registry` served from it.
    pub async fn serve_provider(
        &mut self,
        args: &ProxyArgs,
        stop: &Stop,
        provider: &KafkaTokenProvider,
    ) -> anyhow::Result<()> {
        self.health.set_provider(provider.clone());
        if let Some(addr) = args.token_endpoint {
            // 127.0.0.1 (the default) holds ::1 on the same port too, as `serve` does.
            let listeners = bind(addr, Port::ProxyTokenEndpoint)
                .await
                .with_context(|| format!("cannot listen on --token-endpoint {addr}"))?;
            let local = listeners[0].local_addr()?;
            tracing::info!(target: super::PROXY_LOG_TARGET, address = %local, "token endpoint is http://{local}");
            self.token = Some(tokio::spawn(server::serve(
                listeners,
                provider.router_with(endpoint_errors::endpoint_config_on(
                    Port::ProxyTokenEndpoint,
                    addr.ip(),
                )),
                server::Limits::default(),
                stop.stopped(),
                args.max_sigterm_delay,
            )));
        }
        if let Some(name) = args.registry.schema_registry.clone() {
            let prepared = schema_registry::prepare(
                provider.clone(),
                name,
                args.registry.schema_registry_listen,
                args.registry.schema_registry_endpoint.as_deref(),
                args.quota_project.as_deref(),
                &[],
                Port::ProxySchemaRegistry,
            )
            .await?;
            self.registry = Some(tokio::spawn(schema_registry::serve(
                prepared,
                stop.stopped(),
                args.max_sigterm_delay,
            )));
        }
        Ok(())
    }

    /// The proxies whose readiness and metrics the health port shows, each with its label.
    pub fn set_proxies(&self, statuses: Vec<(String, ProxyStatus)>) {
        self.health.set_proxies(statuses);
    }

    /// Waits for every server to finish draining; the first failure is the error.
    pub async fn join(self) -> anyhow::Result<()> {
        if let Some(token) = self.token {
            token
                .await
                .context("token endpoint task")?
                .context("token endpoint failed")?;
        }
        if let Some(registry) = self.registry {
            registry.await.context("schema registry endpoint task")??;
        }
        if let Some(admin) = self.admin {
            admin
                .await
                .context("admin server task")?
                .context("admin server failed")?;
        }
        self.ops
            .await
            .context("health server task")?
            .context("health server failed")?;
        Ok(())
    }
}
