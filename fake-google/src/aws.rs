//! AWS for workload identity federation: a fake EC2 instance metadata service (IMDSv2) and
//! the check Google's STS makes of an `aws4_request` subject token (a SigV4-signed
//! `GetCallerIdentity` request, URL-encoded JSON).
//!
//! The check re-signs the request with the fake's secret key using AWS's own signer and
//! compares signatures, so a subject token passes only when every signed header survived
//! the serialization and the signature is right.

use std::sync::Arc;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, put};
use serde_json::{Value, json};

use crate::respond;
use crate::state::Shared;

/// The AWS account of the fake role.
pub const ACCOUNT_ID: &str = "123456789012";
/// The instance profile's role name.
pub const ROLE_NAME: &str = "fake-kafka-role";
/// The region the fake instance runs in (availability zone `us-east-1b`).
pub const REGION: &str = "us-east-1";
/// The role's access key id (also valid as `AWS_ACCESS_KEY_ID`).
pub const ACCESS_KEY_ID: &str = "ASIAFAKEFAKEFAKE0001";
/// The role's secret access key.
pub const SECRET_ACCESS_KEY: &str = "fakeSecretAccessKey/fake+fake+fake+fake0";
/// The role's session token.
pub const SESSION_TOKEN: &str = "FwoGZXIvYXdzEFAKE//session+token=";
/// The IMDSv2 session token the fake hands out and then demands.
pub const IMDSV2_TOKEN: &str = "AQAEAFAKE-imdsv2-session-token==";
/// `subject_token_type` of AWS subject tokens.
pub const AWS_SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";

/// The federated subject an AWS caller becomes.
pub fn aws_subject() -> String {
    format!("arn:aws:sts::{ACCOUNT_ID}:assumed-role/{ROLE_NAME}/{ACCESS_KEY_ID}")
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/latest/api/token", put(session_token))
        .route(
            "/latest/meta-data/placement/availability-zone",
            get(|headers: HeaderMap| async move { with_session(&headers, "us-east-1b".into()) }),
        )
        .route(
            "/latest/meta-data/iam/security-credentials",
            get(|headers: HeaderMap| async move { with_session(&headers, ROLE_NAME.into()) }),
        )
        .route(
            "/latest/meta-data/iam/security-credentials/{role}",
            get(role_credentials),
        )
}

async fn session_token(headers: HeaderMap) -> Response {
    if headers
        .get("x-aws-ec2-metadata-token-ttl-seconds")
        .is_none()
    {
        return respond::text(StatusCode::BAD_REQUEST, "text/plain", String::new());
    }
    respond::text(StatusCode::OK, "text/plain", IMDSV2_TOKEN.into())
}

/// IMDSv2: every GET must carry the session token.
fn with_session(headers: &HeaderMap, body: String) -> Response {
    if headers
        .get("x-aws-ec2-metadata-token")
        .is_none_or(|v| v.as_bytes() != IMDSV2_TOKEN.as_bytes())
    {
        return respond::text(StatusCode::UNAUTHORIZED, "text/plain", String::new());
    }
    respond::text(StatusCode::OK, "text/plain", body)
}

async fn role_credentials(
    State(_shared): State<Arc<Shared>>,
    axum::extract::Path(role): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    if role != ROLE_NAME {
        return respond::text(StatusCode::NOT_FOUND, "text/plain", String::new());
    }
    let body = json!({
        "Code": "Success",
        "Type": "AWS-HMAC",
        "AccessKeyId": ACCESS_KEY_ID,
        "SecretAccessKey": SECRET_ACCESS_KEY,
        "Token": SESSION_TOKEN,
        "Expiration": "2099-01-01T00:00:00Z",
    });
    with_session(&headers, body.to_string())
}

/// Checks an `aws4_request` subject token for `audience`; returns the caller's subject.
pub(crate) fn verify_subject_token(token: &str, audience: &str) -> Result<String, String> {
    let decoded = percent_encoding::percent_decode_str(token)
        .decode_utf8()
        .map_err(|_| "not percent-encoded UTF-8".to_owned())?;
    let request: Value =
        serde_json::from_str(&decoded).map_err(|_| "not URL-encoded JSON".to_owned())?;
    let url = request["url"].as_str().unwrap_or("");
    let expected_url =
        format!("https://sts.{REGION}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15");
    if url != expected_url {
        return Err(format!("url {url:?} is not {expected_url:?}"));
    }
    if request["method"] != "POST" {
        return Err("method is not POST".into());
    }
    let headers: Vec<(String, String)> = request["headers"]
        .as_array()
        .ok_or("no headers")?
        .iter()
        .map(|h| {
            (
                h["key"].as_str().unwrap_or("").to_owned(),
                h["value"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if header("x-goog-cloud-target-resource").as_deref() != Some(audience) {
        return Err("x-goog-cloud-target-resource is not the audience".into());
    }
    if header("x-amz-security-token").as_deref() != Some(SESSION_TOKEN) {
        return Err("x-amz-security-token is not the role's session token".into());
    }
    let authorization = header("authorization").ok_or("no Authorization header")?;
    let date = header("x-amz-date").ok_or("no x-amz-date header")?;
    let format = time::format_description::parse("[year][month][day]T[hour][minute][second]Z")
        .expect("valid format description");
    let signed_at = time::PrimitiveDateTime::parse(&date, &format)
        .map_err(|_| format!("x-amz-date {date:?} is not YYYYMMDDTHHMMSSZ"))?
        .assume_utc();
    // Re-sign what the caller says it signed, with the secret only AWS (and this fake) knows.
    let identity = Credentials::new(
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        Some(SESSION_TOKEN.to_owned()),
        None,
        "fake-google",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("sts")
        .time(signed_at.into())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let unsigned: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| {
            !["authorization", "x-amz-date", "x-amz-security-token"]
                .contains(&k.to_ascii_lowercase().as_str())
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let signable =
        SignableRequest::new("POST", url, unsigned.into_iter(), SignableBody::Bytes(&[]))
            .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let expected = instructions
        .headers()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default();
    if authorization != expected {
        return Err("the SigV4 signature does not match".into());
    }
    Ok(aws_subject())
}
