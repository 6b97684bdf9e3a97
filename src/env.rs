//! The one seam through which the crate reads environment variables.
//!
//! Everything that depends on the environment (ADC file locations, endpoint overrides, the
//! principal override) takes an [`Env`] instead of calling [`std::env::var`], so tests pass a
//! map instead of mutating the process environment, which is shared by every test thread.

use std::collections::HashMap;
use std::sync::Arc;

/// A snapshot of environment variables.
///
/// ```
/// use gcp_kafka_auth_handler::Env;
/// let env = Env::from_pairs([("GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL", "app@p.iam.gserviceaccount.com")]);
/// assert_eq!(env.get("GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL"), Some("app@p.iam.gserviceaccount.com"));
/// assert_eq!(env.get("HOME"), None);
/// ```
#[derive(Clone, Default)]
pub struct Env {
    vars: Arc<HashMap<String, String>>,
}

impl Env {
    /// Takes a snapshot of the process environment (variables that are not UTF-8 are skipped).
    pub fn from_process() -> Self {
        Self::from_pairs(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// Builds an environment from explicit pairs; nothing is read from the process.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: Arc::new(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// The value of `name`, treating an empty value as unset (as Google's libraries do).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

impl std::fmt::Debug for Env {
    // Values can be secrets (client secrets passed by env), so only names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.vars.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Env").field("names", &names).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_count_as_unset() {
        let env = Env::from_pairs([("A", ""), ("B", "x")]);
        assert_eq!(env.get("A"), None);
        assert_eq!(env.get("B"), Some("x"));
    }

    #[test]
    fn debug_shows_names_not_values() {
        let env = Env::from_pairs([("CLIENT_SECRET", "hunter2")]);
        let shown = format!("{env:?}");
        assert_eq!(shown, r#"Env { names: ["CLIENT_SECRET"] }"#);
    }
}
