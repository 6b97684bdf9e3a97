//! `credential_source.url`: a subject token from a local HTTP endpoint (Azure's instance
//! metadata, a CI runner's token service), with the headers the file lists.

use std::collections::BTreeMap;

use secrecy::SecretString;

use super::{SubjectTokenFormat, SubjectTokenSource};
use crate::credentials::upstream::{self, HttpClients};
use crate::credentials::{BoxFuture, CredentialError};

/// A subject token fetched with a GET.
pub struct UrlSource {
    url: String,
    headers: BTreeMap<String, String>,
    format: SubjectTokenFormat,
    http: reqwest::Client,
}

impl UrlSource {
    /// GET `url` with `headers`; the token is the body as text or a JSON field.
    pub fn new(
        url: impl Into<String>,
        headers: BTreeMap<String, String>,
        format: SubjectTokenFormat,
        http: &HttpClients,
    ) -> Self {
        Self {
            url: url.into(),
            headers,
            format,
            // Token services on the machine itself (Azure IMDS) must not go through a proxy.
            http: http.metadata.clone(),
        }
    }
}

impl std::fmt::Debug for UrlSource {
    // Header values may be credentials (a bearer token to the token service).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSource")
            .field("url", &upstream::display_url(&self.url))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("format", &self.format)
            .finish()
    }
}

impl SubjectTokenSource for UrlSource {
    fn subject_token(&self) -> BoxFuture<'_, Result<SecretString, CredentialError>> {
        Box::pin(async move {
            let what = "subject token URL";
            let mut request = self.http.get(&self.url);
            for (name, value) in &self.headers {
                request = request.header(name, value);
            }
            let body = upstream::exchange(what, &self.url, request).await?;
            self.format.extract(
                &body,
                &format!("the answer of {}", upstream::display_url(&self.url)),
            )
        })
    }

    fn describe(&self) -> String {
        format!("URL {}", upstream::display_url(&self.url))
    }
}
