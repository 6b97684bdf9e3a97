//! `credential_source.file`: a subject token in a file (a projected Kubernetes service-account
//! token, a CI system's OIDC token), read anew before every exchange because such files rotate.

use secrecy::SecretString;

use super::{SubjectTokenFormat, SubjectTokenSource};
use crate::credentials::{BoxFuture, CredentialError};

/// A subject token read from a file.
#[derive(Debug)]
pub struct FileSource {
    path: String,
    format: SubjectTokenFormat,
}

impl FileSource {
    /// The token in `path`, as text or in a JSON field.
    pub fn new(path: impl Into<String>, format: SubjectTokenFormat) -> Self {
        Self {
            path: path.into(),
            format,
        }
    }
}

impl SubjectTokenSource for FileSource {
    fn subject_token(&self) -> BoxFuture<'_, Result<SecretString, CredentialError>> {
        Box::pin(async move {
            let path = std::path::PathBuf::from(&self.path);
            let content = tokio::task::spawn_blocking(move || {
                crate::files::read_capped(
                    &path,
                    crate::files::MAX_SUBJECT_TOKEN_FILE_BYTES,
                    "a subject token file",
                )
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|e| {
                CredentialError::invalid(format!(
                    "cannot read the subject token file {} named in credential_source.file: {e}; \
                     check that the token is mounted there and readable",
                    self.path
                ))
            })?;
            self.format
                .extract(&content, &format!("the subject token file {}", self.path))
        })
    }

    fn describe(&self) -> String {
        format!("file {}", self.path)
    }
}
