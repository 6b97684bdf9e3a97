//! `credential_source.executable` (Google's "pluggable auth"): a program prints the subject
//! token as JSON.
//!
//! Google's rules, followed here: only when `GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1`;
//! the command is split on whitespace and run without a shell; it gets
//! `GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE`, `_TOKEN_TYPE`, `_INTERACTIVE=0`, `_IMPERSONATED_EMAIL`
//! and `_OUTPUT_FILE`; it must finish within `timeout_millis` (default 30 s, 5–120 s); its
//! answer is `{"version":1,"success":true,"token_type":...,"id_token"|"saml_response":...,
//! "expiration_time":<unix seconds>}`; with `output_file`, a valid unexpired answer in that
//! file is used instead of running the program.

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::SubjectTokenSource;
use crate::credentials::{BoxFuture, CredentialError, ErrorKind, upstream};
use crate::env::Env;

/// The variable that must be `1` before any executable is run.
pub const ALLOW_EXECUTABLES_VAR: &str = "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES";
/// `timeout_millis` when the file gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const MIN_TIMEOUT_MS: u64 = 5_000;
const MAX_TIMEOUT_MS: u64 = 120_000;

#[derive(Deserialize)]
pub(crate) struct ExecutableConfig {
    command: Option<String>,
    timeout_millis: Option<u64>,
    output_file: Option<String>,
}

/// A subject token printed by a program.
#[derive(Debug)]
pub struct ExecutableSource {
    program: String,
    args: Vec<String>,
    timeout: Duration,
    output_file: Option<String>,
    audience: String,
    token_type: String,
    impersonated_email: Option<String>,
}

/// The program's answer (stdout or the output file).
#[derive(Deserialize)]
struct ExecutableResponse {
    version: Option<u64>,
    success: Option<bool>,
    token_type: Option<String>,
    id_token: Option<SecretString>,
    saml_response: Option<SecretString>,
    expiration_time: Option<i64>,
    code: Option<String>,
    message: Option<String>,
}

impl ExecutableSource {
    pub(crate) fn from_config(
        config: &ExecutableConfig,
        audience: &str,
        token_type: &str,
        impersonated_email: Option<String>,
        env: &Env,
    ) -> Result<Self, CredentialError> {
        if env.get(ALLOW_EXECUTABLES_VAR) != Some("1") {
            return Err(CredentialError::invalid(format!(
                "the credentials run an executable, which is allowed only when \
                 {ALLOW_EXECUTABLES_VAR}=1; set it if you trust the command in \
                 credential_source.executable"
            )));
        }
        let command = config.command.as_deref().unwrap_or("").trim();
        let mut words = command.split_whitespace().map(str::to_owned);
        let program = words.next().ok_or_else(|| {
            CredentialError::invalid("credential_source.executable has no command")
        })?;
        let timeout_ms = config
            .timeout_millis
            .unwrap_or(DEFAULT_TIMEOUT.as_millis() as u64);
        if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(CredentialError::invalid(format!(
                "credential_source.executable.timeout_millis is {timeout_ms}; it must be between \
                 {MIN_TIMEOUT_MS} and {MAX_TIMEOUT_MS}"
            )));
        }
        Ok(Self {
            program,
            args: words.collect(),
            timeout: Duration::from_millis(timeout_ms),
            output_file: config.output_file.clone().filter(|f| !f.is_empty()),
            audience: audience.to_owned(),
            token_type: token_type.to_owned(),
            impersonated_email,
        })
    }

    /// A still-valid answer in the output file, if there is one. Anything else (no file,
    /// garbage, expired, a failure) means: run the program.
    async fn cached(&self) -> Option<SecretString> {
        let path = self.output_file.as_ref()?;
        let owned = std::path::PathBuf::from(path);
        let content = tokio::task::spawn_blocking(move || {
            crate::files::read_capped(
                &owned,
                crate::files::MAX_SUBJECT_TOKEN_FILE_BYTES,
                "an executable's output file",
            )
        })
        .await
        .ok()?
        .ok()?;
        if content.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        match self.parse(&content, &format!("the output file {path}"), true) {
            Ok(token) => Some(token),
            Err(err) => {
                tracing::debug!(file = %path, reason = %err, "not using the executable's output file");
                None
            }
        }
    }

    async fn run(&self) -> Result<SecretString, CredentialError> {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.args)
            .env("GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE", &self.audience)
            .env("GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE", &self.token_type)
            .env("GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some(email) = &self.impersonated_email {
            command.env("GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL", email);
        }
        if let Some(file) = &self.output_file {
            command.env("GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE", file);
        }
        let mut child = command.spawn().map_err(|e| {
            CredentialError::invalid(format!(
                "cannot run the credential executable {}: {e}",
                self.program
            ))
        })?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let limit = crate::files::MAX_SUBJECT_TOKEN_FILE_BYTES;
        // Read at most one byte past the cap, then wait: a program that writes more is killed
        // (kill_on_drop) instead of being buffered whole.
        let run = async {
            use tokio::io::AsyncReadExt as _;
            let mut out = Vec::new();
            (&mut stdout).take(limit + 1).read_to_end(&mut out).await?;
            if out.len() as u64 > limit {
                return Ok(None);
            }
            let status = child.wait().await?;
            Ok::<_, std::io::Error>(Some((status, out)))
        };
        let outcome = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| {
                CredentialError::transient(format!(
                    "the credential executable {} did not finish within {} ms \
                     (credential_source.executable.timeout_millis)",
                    self.program,
                    self.timeout.as_millis()
                ))
            })?
            .map_err(|e| {
                CredentialError::transient(format!(
                    "the credential executable {} failed: {e}",
                    self.program
                ))
            })?;
        let Some((status, stdout)) = outcome else {
            return Err(CredentialError::invalid(format!(
                "the credential executable {} wrote more than {limit} bytes, the limit for its output; \
                 it must print one JSON response",
                self.program
            )));
        };
        if !status.success() {
            return Err(CredentialError::transient(format!(
                "the credential executable {} exited with {}",
                self.program, status
            )));
        }
        self.parse(&stdout, &format!("the output of {}", self.program), false)
    }

    /// Validates an answer; `cached` answers must carry an expiration time.
    fn parse(
        &self,
        content: &[u8],
        origin: &str,
        cached: bool,
    ) -> Result<SecretString, CredentialError> {
        let response: ExecutableResponse = serde_json::from_slice(content).map_err(|e| {
            CredentialError::invalid(format!(
                "{origin} is not the JSON Google's executable-sourced credentials expect ({})",
                upstream::describe_json_error(&e)
            ))
        })?;
        let invalid = |why: String| CredentialError::invalid(format!("{origin}: {why}"));
        match response.version {
            Some(1) => {}
            Some(v) => return Err(invalid(format!("version {v} is not supported (only 1)"))),
            None => return Err(invalid("no version".into())),
        }
        match response.success {
            Some(true) => {}
            Some(false) => {
                return Err(CredentialError::new(
                    ErrorKind::Rejected,
                    format!(
                        "{origin}: the executable reported failure {}: {}",
                        response.code.as_deref().unwrap_or("(no code)"),
                        response.message.as_deref().unwrap_or("(no message)")
                    ),
                ));
            }
            None => return Err(invalid("no success field".into())),
        }
        let token_type = response
            .token_type
            .ok_or_else(|| invalid("no token_type".into()))?;
        let token = match token_type.as_str() {
            "urn:ietf:params:oauth:token-type:jwt"
            | "urn:ietf:params:oauth:token-type:id_token" => response.id_token,
            "urn:ietf:params:oauth:token-type:saml2" => response.saml_response,
            other => return Err(invalid(format!("token_type `{other}` is not supported"))),
        }
        .filter(|t| !t.expose_secret().is_empty())
        .ok_or_else(|| invalid(format!("no token for token_type {token_type}")))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64;
        match response.expiration_time {
            Some(exp) if exp <= now => Err(invalid("the token has expired".into())),
            None if cached || self.output_file.is_some() => Err(invalid(
                "no expiration_time, which is required when output_file is set".into(),
            )),
            _ => Ok(token),
        }
    }
}

impl SubjectTokenSource for ExecutableSource {
    fn subject_token(&self) -> BoxFuture<'_, Result<SecretString, CredentialError>> {
        Box::pin(async move {
            if let Some(token) = self.cached().await {
                return Ok(token);
            }
            self.run().await
        })
    }

    fn describe(&self) -> String {
        format!("executable {}", self.program)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(output_file: Option<&str>) -> ExecutableSource {
        ExecutableSource::from_config(
            &ExecutableConfig {
                command: Some("/bin/true --flag".into()),
                timeout_millis: None,
                output_file: output_file.map(str::to_owned),
            },
            "aud",
            "urn:ietf:params:oauth:token-type:jwt",
            None,
            &Env::from_pairs([(ALLOW_EXECUTABLES_VAR, "1")]),
        )
        .unwrap()
    }

    #[test]
    fn refused_unless_allowed_and_the_error_names_the_variable() {
        let config = ExecutableConfig {
            command: Some("/bin/true".into()),
            timeout_millis: None,
            output_file: None,
        };
        for env in [
            Env::default(),
            Env::from_pairs([(ALLOW_EXECUTABLES_VAR, "true")]),
        ] {
            let err = ExecutableSource::from_config(&config, "a", "t", None, &env).unwrap_err();
            assert!(
                err.message()
                    .contains("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1"),
                "{err}"
            );
        }
    }

    #[test]
    fn command_is_split_and_timeout_bounded() {
        let s = source(None);
        assert_eq!(
            (s.program.as_str(), s.args.as_slice()),
            ("/bin/true", ["--flag".to_owned()].as_slice())
        );
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        let env = Env::from_pairs([(ALLOW_EXECUTABLES_VAR, "1")]);
        let err = ExecutableSource::from_config(
            &ExecutableConfig {
                command: Some("x".into()),
                timeout_millis: Some(1000),
                output_file: None,
            },
            "a",
            "t",
            None,
            &env,
        )
        .unwrap_err();
        assert_eq!(
            err.message(),
            "credential_source.executable.timeout_millis is 1000; it must be between 5000 and 120000"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_program_that_outlives_its_timeout_is_killed_and_reported() {
        let env = Env::from_pairs([(ALLOW_EXECUTABLES_VAR, "1")]);
        let source = ExecutableSource::from_config(
            &ExecutableConfig {
                command: Some("sleep 600".into()),
                timeout_millis: Some(5000),
                output_file: None,
            },
            "a",
            "urn:ietf:params:oauth:token-type:jwt",
            None,
            &env,
        )
        .unwrap();
        let err = source.subject_token().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transient);
        assert_eq!(
            err.message(),
            "the credential executable sleep did not finish within 5000 ms \
             (credential_source.executable.timeout_millis)"
        );
    }

    #[test]
    fn responses_are_validated() {
        let s = source(None);
        let future = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        let ok = format!(
            r#"{{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:jwt","id_token":"eyJ.a.b","expiration_time":{future}}}"#
        );
        assert_eq!(
            s.parse(ok.as_bytes(), "o", false).unwrap().expose_secret(),
            "eyJ.a.b"
        );
        let no_exp = r#"{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:id_token","id_token":"eyJ.a.b"}"#;
        assert_eq!(
            s.parse(no_exp.as_bytes(), "o", false)
                .unwrap()
                .expose_secret(),
            "eyJ.a.b"
        );
        assert_eq!(
            s.parse(no_exp.as_bytes(), "o", true).unwrap_err().message(),
            "o: no expiration_time, which is required when output_file is set"
        );
        let expired = r#"{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:jwt","id_token":"eyJ.a.b","expiration_time":1000}"#;
        assert_eq!(
            s.parse(expired.as_bytes(), "o", false)
                .unwrap_err()
                .message(),
            "o: the token has expired"
        );
        let failed =
            r#"{"version":1,"success":false,"code":"401","message":"Caller not authorized."}"#;
        let err = s.parse(failed.as_bytes(), "o", false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Rejected);
        assert_eq!(
            err.message(),
            "o: the executable reported failure 401: Caller not authorized."
        );
        let v2 = r#"{"version":2,"success":true}"#;
        assert_eq!(
            s.parse(v2.as_bytes(), "o", false).unwrap_err().message(),
            "o: version 2 is not supported (only 1)"
        );
    }
}
