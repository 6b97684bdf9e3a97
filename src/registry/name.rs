//! Managed Kafka schema registry names (`projects/P/locations/L/schemaRegistries/R`), parsed
//! once so that every URL built from them is well-formed.

use std::fmt;
use std::str::FromStr;

/// The form a registry name takes, for error messages.
pub const NAME_FORM: &str = "projects/PROJECT/locations/REGION/schemaRegistries/REGISTRY";

/// A Managed Kafka schema registry's resource name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryName {
    /// The project id (or number).
    pub project: String,
    /// The region (`locations/L`), the same as the clusters that use the registry.
    pub location: String,
    /// The registry id: letters, digits and underscores, at most 63 characters.
    pub registry: String,
}

/// A string that is not a registry name; the message shows the expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a Managed Kafka schema registry name ({why}): write {NAME_FORM}, e.g. projects/my-project/locations/us-central1/schemaRegistries/my_registry (`gcloud beta managed-kafka schema-registries list --location=REGION` lists them)"
)]
pub struct BadRegistryName {
    /// What was given.
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl FromStr for RegistryName {
    type Err = BadRegistryName;

    fn from_str(text: &str) -> Result<Self, BadRegistryName> {
        let bad = |why| BadRegistryName {
            text: text.to_owned(),
            why,
        };
        let [project, location, registry] = crate::resource_name::split(
            text,
            "schemaRegistries",
            "the parts must be projects/…/locations/…/schemaRegistries/…",
        )
        .map_err(bad)?;
        // Google: registry ids are letters, digits and underscores, at most 63 characters.
        let registry_ok = !registry.is_empty()
            && registry.len() <= 63
            && registry
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !registry_ok {
            return Err(bad(
                "the registry id must be 1 to 63 letters, digits or underscores",
            ));
        }
        Ok(RegistryName {
            project: project.to_owned(),
            location: location.to_owned(),
            registry: registry.to_owned(),
        })
    }
}

impl fmt::Display for RegistryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "projects/{}/locations/{}/schemaRegistries/{}",
            self.project, self.location, self.registry
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        let name: RegistryName = "projects/my-proj/locations/us-central1/schemaRegistries/orders_1"
            .parse()
            .unwrap();
        assert_eq!(
            name,
            RegistryName {
                project: "my-proj".to_owned(),
                location: "us-central1".to_owned(),
                registry: "orders_1".to_owned(),
            }
        );
        assert_eq!(
            name.to_string(),
            "projects/my-proj/locations/us-central1/schemaRegistries/orders_1"
        );
    }

    #[test]
    fn bad_names_say_what_is_wrong_and_show_the_form() {
        let long = format!("projects/p/locations/r/schemaRegistries/{}", "a".repeat(64));
        for (text, why) in [
            ("my_registry", "it must have six parts separated by `/`"),
            (
                "projects/p/locations/r/clusters/c",
                "the parts must be projects/…/locations/…/schemaRegistries/…",
            ),
            (
                "projects//locations/r/schemaRegistries/c",
                "the project id is empty or has characters ids cannot have",
            ),
            (
                "projects/p/locations/r/schemaRegistries/my-registry",
                "the registry id must be 1 to 63 letters, digits or underscores",
            ),
            (
                long.as_str(),
                "the registry id must be 1 to 63 letters, digits or underscores",
            ),
        ] {
            let err = text.parse::<RegistryName>().unwrap_err();
            assert_eq!(err.why, why, "{text}");
            assert!(
                err.to_string()
                    .contains("write projects/PROJECT/locations/REGION/schemaRegistries/REGISTRY"),
                "{err}"
            );
        }
    }
}
