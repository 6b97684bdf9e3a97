//! The binary's subcommands beyond `serve` and `version`, one module each. Each owns its clap
//! arguments, so adding a command touches `args.rs` only to list it.

pub mod args;
pub mod client_config;
pub mod completions;
pub mod healthcheck;
pub mod token;

use std::time::Duration;

use anyhow::anyhow;
use gcp_kafka_auth_handler::BuildError;
use gcp_kafka_auth_handler::ImpersonationChain;
use gcp_kafka_auth_handler::{Env, KafkaTokenProvider};

/// A provider for the process environment, with errors that name the option to fix.
pub fn build_provider(
    principal: Option<&str>,
    refresh_margin: Duration,
    impersonation: Option<ImpersonationChain>,
) -> anyhow::Result<KafkaTokenProvider> {
    let mut builder = KafkaTokenProvider::builder()
        .with_env(Env::from_process())
        .with_refresh_margin(refresh_margin);
    if let Some(principal) = principal {
        builder = builder.with_principal(principal);
    }
    if let Some(chain) = impersonation {
        builder = builder.with_impersonation(chain);
    }
    builder.build().map_err(|err| match err {
        BuildError::Principal(_) => {
            anyhow!("invalid --principal (GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL): {err}")
        }
        BuildError::Timing(_) => {
            anyhow!("invalid --refresh-margin (GCP_KAFKA_AUTH_REFRESH_MARGIN): {err}")
        }
        _ => anyhow!("{err}"),
    })
}
