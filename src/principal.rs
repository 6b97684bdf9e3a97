//! The principal Managed Kafka authenticates: the `sub` claim, `User:<principal>` in ACLs.

use std::fmt;

/// Environment variable that names the principal explicitly; it wins over every other rule
/// (Google's own libraries honour it too).
pub const PRINCIPAL_OVERRIDE_VAR: &str = "GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL";

/// A validated principal: an email address or a `principal://` IAM identifier.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Principal(String);

/// Why a string is not a principal Managed Kafka can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrincipalError {
    /// Nothing was given.
    #[error("the principal is empty")]
    Empty,
    /// GKE Workload Identity without the annotation that makes the metadata server return a
    /// usable identity.
    #[error(
        "the metadata server named the workload identity pool `{0}` instead of a principal; \
         annotate the Kubernetes service account with `iam.gke.io/return-principal-id-as-email: \"true\"` \
         or set {PRINCIPAL_OVERRIDE_VAR} to the principal Managed Kafka should see"
    )]
    WorkloadIdentityPool(String),
    /// Neither an email address nor a `principal://` identifier.
    #[error(
        "`{0}` is not a principal Managed Kafka accepts: use a service-account or user email \
         address, or a `principal://iam.googleapis.com/...` identifier"
    )]
    Malformed(String),
}

impl Principal {
    /// Validates `value` as a principal.
    ///
    /// ```
    /// use gcp_kafka_auth_handler::Principal;
    /// assert!(Principal::new("app@proj.iam.gserviceaccount.com").is_ok());
    /// assert!(Principal::new("principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/s").is_ok());
    /// assert!(Principal::new("proj.svc.id.goog").is_err());
    /// assert!(Principal::new("").is_err());
    /// ```
    pub fn new(value: impl Into<String>) -> Result<Self, PrincipalError> {
        let value: String = value.into();
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(PrincipalError::Empty);
        }
        if trimmed.ends_with(".svc.id.goog") && !trimmed.contains('@') {
            return Err(PrincipalError::WorkloadIdentityPool(trimmed.to_owned()));
        }
        let is_email = matches!(trimmed.split_once('@'), Some((local, domain)) if !local.is_empty() && !domain.is_empty());
        let is_iam = trimmed
            .strip_prefix("principal://")
            .is_some_and(|rest| !rest.is_empty());
        if trimmed.chars().any(char::is_whitespace) || !(is_email || is_iam) {
            return Err(PrincipalError::Malformed(trimmed.to_owned()));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The principal as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Principal({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_emails_and_iam_principals_trimmed() {
        assert_eq!(Principal::new(" a@b.c\n").unwrap().as_str(), "a@b.c");
        assert_eq!(
            Principal::new("principal://iam.googleapis.com/x")
                .unwrap()
                .as_str(),
            "principal://iam.googleapis.com/x"
        );
    }

    #[test]
    fn refuses_workload_identity_pool_with_the_fix() {
        let err = Principal::new("my-proj.svc.id.goog").unwrap_err();
        assert_eq!(
            err,
            PrincipalError::WorkloadIdentityPool("my-proj.svc.id.goog".into())
        );
        let text = err.to_string();
        assert!(
            text.contains("iam.gke.io/return-principal-id-as-email"),
            "{text}"
        );
        assert!(text.contains(PRINCIPAL_OVERRIDE_VAR), "{text}");
    }

    #[test]
    fn refuses_empty_and_malformed() {
        assert_eq!(Principal::new("  "), Err(PrincipalError::Empty));
        assert_eq!(
            Principal::new("nobody"),
            Err(PrincipalError::Malformed("nobody".into()))
        );
        assert_eq!(
            Principal::new("@x"),
            Err(PrincipalError::Malformed("@x".into()))
        );
        assert_eq!(
            Principal::new("a b@c"),
            Err(PrincipalError::Malformed("a b@c".into()))
        );
        assert_eq!(
            Principal::new("principal://"),
            Err(PrincipalError::Malformed("principal://".into()))
        );
    }
}
