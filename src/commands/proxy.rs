//! `proxy`: the Kafka-protocol proxy (library module `proxy`), its health/metrics port and,
//! with `--token-endpoint`, the token endpoint from the same provider.
//!
//! Conventions of Google's own auth proxies (Cloud SQL, AlloyDB): Managed Kafka cluster names
//! as positional arguments (bootstrap address looked up with the Managed Kafka API, one
//! bootstrap port and broker port block per cluster), `/startup`, `/readiness` and
//! `/liveness`, the opt-in `POST /quitquitquit` admin endpoint, `--exit-zero-on-sigterm`,
//! `--min-sigterm-delay` and `--max-sigterm-delay`.
//!
//! This file is the command's outline: parse the flags into plans, build one `Proxy` per
//! plan, run them until a stop. The parts live beside it: the flags and their translation
//! into a `ProxyBuilder` (`proxy_args`), the plans (`proxy_plan`), the listeners
//! (`proxy_listen`), the cluster lookup (`proxy_lookup`), the health, admin, token and
//! registry ports (`proxy_ports`), stopping (`proxy_stop`), `--check` (`proxy_check`) and the
//! errors in the flags' words (`proxy_errors`).

use std::process::ExitCode;

use anyhow::Context as _;

use crate::commands::endpoint_errors::Port;
pub use crate::commands::proxy_args::ProxyArgs;
use crate::commands::proxy_errors;
use crate::commands::proxy_listen::{bind, max_connections, refuse_remote};
use crate::commands::proxy_lookup::lookup;
use crate::commands::proxy_plan::{Target, plans};
use crate::commands::proxy_ports::Ports;
use crate::commands::proxy_stop::Stop;

/// Runs the command inside a tokio runtime; the exit code says what stopped it.
pub async fn run(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    if args.check {
        return super::proxy_check::check(args).await;
    }
    let stop = Stop::start(args.min_sigterm_delay);

    // Parse: which clusters on which ports, and whether other hosts may reach them.
    let plans = plans(
        &args.clusters,
        &args.bootstrap_servers,
        args.listen,
        args.broker_port_base,
    )?;
    refuse_remote(
        args.allow_remote_clients,
        args.listen.ip(),
        &[
            ("--http-address", Some(args.http_address)),
            ("--token-endpoint", args.token_endpoint.map(|a| a.ip())),
            (
                "--schema-registry-listen",
                args.registry
                    .schema_registry
                    .is_some()
                    .then_some(args.registry.schema_registry_listen.ip()),
            ),
        ],
    )?;
    let max_connections = max_connections(args.max_connections);

    // Listen before anything slow, so that clients wait in the backlog instead of being
    // refused, and the health port answers while the credentials load.
    let mut listeners = Vec::new();
    for plan in &plans {
        let bound = bind(plan.listen, Port::ProxyListen)
            .await
            .with_context(|| format!("cannot listen on {} for {}", plan.listen, plan.label))?;
        listeners.push(bound);
    }
    let mut ports = Ports::open(&args, &stop).await?;
    let provider = super::credentials::build_provider(&args.provider, args.principal.as_deref())?;
    ports.serve_provider(&args, &stop, &provider).await?;

    // Build: one proxy per plan, a cluster name looked up first.
    let options = args.lookup_options();
    let mut proxies = Vec::new();
    let mut statuses = Vec::new();
    for plan in &plans {
        let bootstrap = match &plan.target {
            Target::Bootstrap(servers) => servers.clone(),
            Target::Cluster(name) => {
                tokio::select! {
                    found = lookup(&provider, name, &options) => vec![found?],
                    () = stop.stopped() => return Ok(stop.exit_code(args.exit_zero_on_sigterm)),
                }
            }
        };
        let proxy = args
            .builder(provider.clone(), &bootstrap, plan.broker_port_base)?
            .with_max_connections(max_connections)
            .build()
            .map_err(proxy_errors::build_error)?;
        statuses.push((plan.label.clone(), proxy.status()));
        proxies.push(proxy);
    }
    ports.set_proxies(statuses);
    if !args.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %args.listen,
            identity = %provider.describe_source(),
            "--allow-remote-clients: the Kafka listener is not on loopback; every host that can reach it uses the cluster as this identity, without authenticating"
        );
    }

    // Run until a stop, then let every server drain.
    let mut running = Vec::new();
    for (proxy, listeners) in proxies.into_iter().zip(listeners) {
        running.push(tokio::spawn(proxy.run_on(listeners, stop.stopped())));
    }
    for task in running {
        task.await.context("proxy task")??;
    }
    ports.join().await?;
    tracing::info!(reason = ?stop.reason(), "stopped");
    Ok(stop.exit_code(args.exit_zero_on_sigterm))
}
