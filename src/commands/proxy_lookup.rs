//! `proxy`'s lookup of a Managed Kafka cluster's bootstrap address by its resource name (the
//! library's `cluster_name::lookup_bootstrap`), with the retries a sidecar starting beside a
//! flaky network wants: 5xx and network errors twice more, with backoff, and every error
//! worded with the flags (`proxy_errors`). Shared by serving and `--check`.

use std::time::Duration;

use gcp_kafka_auth_handler::KafkaTokenProvider;
use gcp_kafka_auth_handler::proxy::cluster_name::{self, ClusterName, LookupError, LookupOptions};

use crate::commands::proxy_errors;

/// Looks a cluster's bootstrap address up, retrying what may pass (5xx, network) twice.
pub async fn lookup(
    provider: &KafkaTokenProvider,
    name: &ClusterName,
    options: &LookupOptions,
) -> anyhow::Result<String> {
    let mut backoff = Duration::from_millis(500);
    for attempt in 1.. {
        match cluster_name::lookup_bootstrap(provider, name, options).await {
            Ok(address) => {
                tracing::info!(target: super::PROXY_LOG_TARGET, cluster = %name, bootstrap = %address, "looked up the cluster's bootstrap address");
                return Ok(address);
            }
            Err(
                err @ (LookupError::Unreachable { .. }
                | LookupError::Status {
                    status: 500..=599, ..
                }),
            ) if attempt < 3 => {
                let err = proxy_errors::lookup_message(&err);
                tracing::warn!(target: super::PROXY_LOG_TARGET, "{err}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(err) => return Err(anyhow::anyhow!(proxy_errors::lookup_message(&err))),
        }
    }
    unreachable!("the loop returns")
}
