//! The error every credential source returns, classified where it is created.

use std::fmt;

/// What kind of failure a [`CredentialError`] is; retry and cache logic only read this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No credentials were found anywhere ADC looks.
    NotFound,
    /// Worth retrying: network trouble, timeouts, 5xx, 429, garbage answers.
    Transient,
    /// Google refused the credentials (revoked key, bad refresh token, missing permission).
    Rejected,
    /// The configuration is wrong (unreadable or malformed file, unknown type, bad principal).
    Invalid,
}

impl ErrorKind {
    /// Whether retrying later may succeed without anybody changing anything: the one
    /// classification the cache (retry or report), the provider ([`TokenErrorKind`]) and the
    /// endpoint (503 or 400) all use.
    ///
    /// [`TokenErrorKind`]: crate::TokenErrorKind
    pub const fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Transient | ErrorKind::NotFound)
    }
}

/// A credential failure with a message that says what is wrong and how to fix it.
///
/// Messages never contain secrets: callers build them from names, paths, statuses and
/// Google's `error`/`error_description`, never from tokens, keys or request bodies.
#[derive(Clone)]
pub struct CredentialError {
    kind: ErrorKind,
    message: String,
}

impl CredentialError {
    /// An error of `kind` with a message for people.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A transient failure.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }

    /// A configuration error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether retrying the same request later may succeed without anybody changing anything.
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with what a person should do, unless the failure is transient
    /// (then there is nothing to fix, and retrying is the answer).
    pub fn context_unless_transient(self, context: impl fmt::Display) -> Self {
        if self.is_transient() {
            self
        } else {
            self.context(context)
        }
    }

    /// Prefixes the message with context (`"service account a@b: " + message`).
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish()
    }
}

impl std::error::Error for CredentialError {}

impl From<crate::principal::PrincipalError> for CredentialError {
    fn from(err: crate::principal::PrincipalError) -> Self {
        Self::invalid(err.to_string())
    }
}
