//! `proxy --check`: instead of serving, each planned cluster once: its lookup (for a cluster
//! name), then the proxy's start-up probe (token, TCP, TLS, SASL, a bootstrap Metadata round
//! trip), each result printed on stdout as `ok: ...` with the brokers found or `not ready: ...`
//! with the fix; exit 0 when all are ok, else 1. For a deployment's smoke test, and for a
//! person asking "would the proxy work here?".

use std::process::ExitCode;

use crate::commands::proxy_args::ProxyArgs;
use crate::commands::proxy_errors;
use crate::commands::proxy_lookup::lookup;
use crate::commands::proxy_plan::{Target, plans};

/// `--check`: for each cluster, the lookup and the start-up probe once, reported on stdout.
pub async fn check(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let provider = super::credentials::build_provider(&args.provider, args.principal.as_deref())?;
    let options = args.lookup_options();
    let mut code = ExitCode::SUCCESS;
    let plans = plans(
        &args.clusters,
        &args.bootstrap_servers,
        args.listen,
        args.broker_port_base,
    )?;
    let many = plans.len() > 1;
    for plan in plans {
        let label = if many {
            format!("{}: ", plan.label)
        } else {
            String::new()
        };
        let bootstrap = match &plan.target {
            Target::Bootstrap(servers) => servers.clone(),
            Target::Cluster(name) => match lookup(&provider, name, &options).await {
                Ok(found) => vec![found],
                Err(why) => {
                    println!("not ready: {label}{why:#}");
                    code = ExitCode::from(1);
                    continue;
                }
            },
        };
        let proxy = args
            .builder(provider.clone(), &bootstrap, plan.broker_port_base)?
            .build()
            .map_err(proxy_errors::build_error)?;
        match proxy.check().await {
            Ok(brokers) => {
                println!(
                    "ok: {label}bootstrap Metadata round trip succeeded; {} brokers",
                    brokers.len()
                );
                for (broker, port) in brokers {
                    println!(
                        "  node {} at {}:{} -> {}:{port}",
                        broker.node_id, broker.host, broker.port, args.advertised_host
                    );
                }
            }
            Err(why) => {
                println!("not ready: {label}{}", proxy_errors::check_error(&why));
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}
