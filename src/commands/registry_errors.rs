//! The schema registry library's errors in the binary's words: where the library names a
//! `registry::Builder` method, the flag that sets it (`--quota-project`,
//! `--schema-registry-endpoint`); other variants keep the library's text. As
//! `proxy_errors.rs` does for the proxy.

use gcp_kafka_auth_handler::registry::RegistryError;

/// Why the registry cannot be used, naming the flag to change.
pub fn registry_message(err: &RegistryError) -> String {
    match err {
        RegistryError::ServiceDisabled { consumer } => format!(
            "the Managed Kafka API (managedkafka.googleapis.com) is disabled in project {consumer}: enable it with `gcloud services enable managedkafka.googleapis.com --project={consumer}` (the consumer project is the quota project when --quota-project is set), then retry"
        ),
        RegistryError::Unreachable { url, detail } => format!(
            "cannot reach the schema registry at {url}: {detail} (set --schema-registry-endpoint for a private endpoint)"
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_named_by_their_flags() {
        assert_eq!(
            registry_message(&RegistryError::Unreachable {
                url: "https://managedkafka.googleapis.com/v1/r".to_owned(),
                detail: "timed out".to_owned(),
            }),
            "cannot reach the schema registry at https://managedkafka.googleapis.com/v1/r: timed out (set --schema-registry-endpoint for a private endpoint)"
        );
        assert!(
            registry_message(&RegistryError::ServiceDisabled {
                consumer: "123".to_owned()
            })
            .contains("when --quota-project is set")
        );
    }
}
