//! Google-shaped errors (`{"error":{"code","message","status"}}`) → Confluent-shaped ones
//! (`{"error_code":40401,"message":"..."}`), in one reviewed table.
//!
//! Confluent clients act on `error_code`: confluent-kafka-python builds its
//! `SchemaRegistryError` from `error_code` and `message` (both come back empty on Google's
//! shape), the Java client tells "subject not found" (40401) from "version not found" (40402)
//! and "schema not found" (40403), and every serializer reports 409 as an incompatible schema.
//! Google's registry answers in its own shape, so the local endpoint rewrites every error body
//! it does not recognise as Confluent's, keeping Google's message and adding the fix where one
//! is known (which role, which API to enable). Bodies already in Confluent's shape pass
//! through untouched.
//!
//! Google does not document which status and message each registry failure carries, so a row
//! matches on the HTTP status, optionally an `ErrorInfo` reason, a word of the message, and
//! the kind of resource the request named ([`Route`]); the first matching row wins. Every row
//! has a test.

use http::Method;
use serde_json::Value;

use super::name::RegistryName;

/// The kind of resource a Confluent REST path names, after an optional `/contexts/CTX`
/// prefix. Also the `route` label of the metrics (a fixed set, never the raw path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `/subjects`
    Subjects,
    /// `/subjects/S` (POST: is this schema registered under S; DELETE: delete S)
    Subject,
    /// `/subjects/S/versions`
    Versions,
    /// `/subjects/S/versions/V[/schema|/referencedby]`
    Version,
    /// `/schemas/ids/N[/schema|/subjects]`
    SchemaId,
    /// `/schemas/ids/N/versions`
    SchemaIdVersions,
    /// `/schemas`, `/schemas/types`
    Schemas,
    /// `/config`
    Config,
    /// `/config/S`
    SubjectConfig,
    /// `/mode`
    Mode,
    /// `/mode/S`
    SubjectMode,
    /// `/compatibility/subjects/S/versions[/V]`
    Compatibility,
    /// `/contexts`
    Contexts,
    /// anything else
    Other,
}

impl Route {
    /// The route of `path` (the part after the registry's base URL).
    pub fn of(path: &str) -> Route {
        let mut parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        if parts.first() == Some(&"contexts") {
            if parts.len() <= 2 {
                return Route::Contexts;
            }
            parts.drain(..2);
        }
        match parts.as_slice() {
            ["subjects"] => Route::Subjects,
            ["subjects", _] => Route::Subject,
            ["subjects", _, "versions"] => Route::Versions,
            ["subjects", _, "versions", _, ..] => Route::Version,
            ["schemas", "ids", _, "versions"] => Route::SchemaIdVersions,
            ["schemas", "ids", _, ..] => Route::SchemaId,
            ["schemas", ..] => Route::Schemas,
            ["config"] => Route::Config,
            ["config", _] => Route::SubjectConfig,
            ["mode"] => Route::Mode,
            ["mode", _] => Route::SubjectMode,
            ["compatibility", "subjects", _, "versions", ..] => Route::Compatibility,
            _ => Route::Other,
        }
    }

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Route::Subjects => "subjects",
            Route::Subject => "subject",
            Route::Versions => "versions",
            Route::Version => "version",
            Route::SchemaId => "schema_id",
            Route::SchemaIdVersions => "schema_id_versions",
            Route::Schemas => "schemas",
            Route::Config => "config",
            Route::SubjectConfig => "subject_config",
            Route::Mode => "mode",
            Route::SubjectMode => "subject_mode",
            Route::Compatibility => "compatibility",
            Route::Contexts => "contexts",
            Route::Other => "other",
        }
    }
}

/// What the translated message adds to Google's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hint {
    None,
    /// The role the principal needs (viewer for reads, editor for writes).
    Role,
    /// `gcloud services enable managedkafka.googleapis.com`.
    EnableApi,
    /// Check the credentials.
    Doctor,
    /// Check the registry's name.
    RegistryName,
}

/// One reviewed mapping from a Google answer to a Confluent one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row {
    /// Google's HTTP status.
    pub google: u16,
    /// The `ErrorInfo` reason in `error.details`, when the row needs one.
    pub reason: Option<&'static str>,
    /// A word the message must contain (compared in lower case).
    pub word: Option<&'static str>,
    /// The routes the row applies to (empty: any).
    pub routes: &'static [Route],
    /// The HTTP status the client gets.
    pub status: u16,
    /// Confluent's `error_code`.
    pub error_code: u32,
    pub hint: Hint,
    /// What Confluent's clients understand by the code.
    pub meaning: &'static str,
}

const fn row(
    google: u16,
    reason: Option<&'static str>,
    word: Option<&'static str>,
    routes: &'static [Route],
    (status, error_code): (u16, u32),
    hint: Hint,
    meaning: &'static str,
) -> Row {
    Row {
        google,
        reason,
        word,
        routes,
        status,
        error_code,
        hint,
        meaning,
    }
}

use Route::*;

/// The table, first match wins. Reviewed against Confluent's `Errors.java` codes: 40401
/// subject, 40402 version, 40403 schema, 40408 subject compatibility not configured, 40409
/// subject mode not configured, 409 incompatible, 42201 invalid schema, 42202 invalid version,
/// 42203 invalid compatibility level, 42204 invalid mode, 401xx/403xx auth, 500xx backend.
pub(crate) static TABLE: &[Row] = &[
    row(
        404,
        None,
        Some("version"),
        &[],
        (404, 40402),
        Hint::None,
        "version not found",
    ),
    row(
        404,
        None,
        Some("subject"),
        &[],
        (404, 40401),
        Hint::None,
        "subject not found",
    ),
    row(
        404,
        None,
        None,
        &[SchemaId, SchemaIdVersions],
        (404, 40403),
        Hint::None,
        "schema not found",
    ),
    // POST /subjects/S looks a schema up under S: a subject that exists but lacks the schema.
    row(
        404,
        None,
        None,
        &[Subject],
        (404, 40403),
        Hint::None,
        "schema not found",
    ),
    row(
        404,
        None,
        None,
        &[Versions, Version, Compatibility],
        (404, 40401),
        Hint::None,
        "subject not found",
    ),
    row(
        404,
        None,
        None,
        &[SubjectConfig],
        (404, 40408),
        Hint::None,
        "subject compatibility level not configured",
    ),
    row(
        404,
        None,
        None,
        &[SubjectMode],
        (404, 40409),
        Hint::None,
        "subject mode not configured",
    ),
    row(
        404,
        None,
        None,
        &[],
        (404, 404),
        Hint::RegistryName,
        "not found",
    ),
    row(
        409,
        None,
        None,
        &[],
        (409, 409),
        Hint::None,
        "incompatible schema",
    ),
    row(
        400,
        None,
        Some("incompatible"),
        &[],
        (409, 409),
        Hint::None,
        "incompatible schema",
    ),
    row(
        400,
        None,
        Some("compatibility"),
        &[],
        (422, 42203),
        Hint::None,
        "invalid compatibility level",
    ),
    row(
        400,
        None,
        Some("mode"),
        &[],
        (422, 42204),
        Hint::None,
        "invalid mode",
    ),
    row(
        400,
        None,
        Some("version"),
        &[],
        (422, 42202),
        Hint::None,
        "invalid version",
    ),
    row(
        400,
        None,
        Some("schema"),
        &[],
        (422, 42201),
        Hint::None,
        "invalid schema",
    ),
    row(400, None, None, &[], (400, 400), Hint::None, "bad request"),
    row(
        401,
        None,
        None,
        &[],
        (401, 40101),
        Hint::Doctor,
        "unauthorized",
    ),
    row(
        403,
        Some("SERVICE_DISABLED"),
        None,
        &[],
        (403, 40301),
        Hint::EnableApi,
        "forbidden",
    ),
    row(403, None, None, &[], (403, 40301), Hint::Role, "forbidden"),
    row(
        429,
        None,
        None,
        &[],
        (429, 42901),
        Hint::None,
        "rate limited",
    ),
    row(
        500,
        None,
        None,
        &[],
        (500, 50001),
        Hint::None,
        "error in the backend",
    ),
    row(
        503,
        None,
        None,
        &[],
        (503, 50003),
        Hint::None,
        "unavailable",
    ),
    row(
        504,
        None,
        None,
        &[],
        (504, 50002),
        Hint::None,
        "operation timed out",
    ),
];

/// The role for reads and the role for writes.
pub const VIEWER_ROLE: &str = "roles/managedkafka.schemaRegistryViewer";
/// The role registering schemas and changing configuration needs.
pub const EDITOR_ROLE: &str = "roles/managedkafka.schemaRegistryEditor";

/// What the message hints need to know about the request.
pub(crate) struct Context<'a> {
    pub route: Route,
    pub method: &'a Method,
    pub registry: &'a RegistryName,
    /// Whose token was sent.
    pub principal: &'a str,
    pub quota_project: Option<&'a str>,
}

/// Google's error fields, if `body` is a Google API error.
struct GoogleError {
    message: String,
    reason: Option<String>,
    consumer: Option<String>,
}

fn google_error(json: &Value) -> Option<GoogleError> {
    let error = json.get("error")?.as_object()?;
    let message = error.get("message")?.as_str()?.to_owned();
    let info = error
        .get("details")
        .and_then(Value::as_array)
        .and_then(|d| {
            d.iter()
                .find(|d| d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
        });
    Some(GoogleError {
        message,
        reason: info.and_then(|i| i["reason"].as_str()).map(str::to_owned),
        consumer: info
            .and_then(|i| i["metadata"]["consumer"].as_str())
            .map(|c| c.trim_start_matches("projects/").to_owned()),
    })
}

/// `message` without its quoted parts: a subject, version or resource name in quotes
/// (`Subject 'orders-version-value' not found.`) must not decide which row matches.
fn unquoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quote: Option<char> = None;
    for c in message.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None => out.push(c),
        }
    }
    out
}

/// The first row for this answer.
pub(crate) fn find_row(
    status: u16,
    reason: Option<&str>,
    message: &str,
    route: Route,
) -> Option<&'static Row> {
    let lower = unquoted(message).to_ascii_lowercase();
    TABLE.iter().find(|row| {
        row.google == status
            && row.reason.is_none_or(|r| reason == Some(r))
            && row.word.is_none_or(|w| lower.contains(w))
            && (row.routes.is_empty() || row.routes.contains(&route))
    })
}

/// The Confluent-shaped body for an error answer of the registry, or `None` when `body` is
/// already Confluent-shaped (an object with `error_code`) and passes through as it is.
pub(crate) fn translate(status: u16, body: &[u8], ctx: &Context<'_>) -> Option<(u16, String)> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if json.as_ref().is_some_and(|j| j.get("error_code").is_some()) {
        return None;
    }
    let google = json.as_ref().and_then(google_error);
    let (message, reason, consumer) = match google {
        Some(g) => (g.message, g.reason, g.consumer),
        None => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            (
                format!(
                    "the schema registry answered HTTP {status}: {}",
                    text.trim()
                ),
                None,
                None,
            )
        }
    };
    let (out_status, code, hint) = match find_row(status, reason.as_deref(), &message, ctx.route) {
        Some(row) => {
            tracing::debug!(
                google = status,
                error_code = row.error_code,
                meaning = row.meaning,
                "translated the schema registry's error"
            );
            (row.status, row.error_code, row.hint)
        }
        None => (status, u32::from(status), Hint::None),
    };
    let message = format!("{message}{}", hint_text(hint, ctx, consumer.as_deref()));
    Some((out_status, body_json(code, &message)))
}

/// `{"error_code":code,"message":message}`.
pub(crate) fn body_json(code: u32, message: &str) -> String {
    serde_json::json!({"error_code": code, "message": message}).to_string()
}

fn hint_text(hint: Hint, ctx: &Context<'_>, consumer: Option<&str>) -> String {
    let name = ctx.registry;
    match hint {
        Hint::None => String::new(),
        Hint::Role => {
            let (role, what) = if matches!(*ctx.method, Method::GET | Method::HEAD) {
                (VIEWER_ROLE, "to read")
            } else {
                (EDITOR_ROLE, "to change")
            };
            format!(
                " (gcp-kafka-auth-handler: {principal} needs {role} {what} schema registry {name}: gcloud projects add-iam-policy-binding {project} --member=<that principal> --role={role})",
                principal = ctx.principal,
                project = name.project,
            )
        }
        Hint::EnableApi => {
            let consumer = consumer
                .or(ctx.quota_project)
                .unwrap_or(name.project.as_str());
            format!(
                " (gcp-kafka-auth-handler: enable the API with `gcloud services enable managedkafka.googleapis.com --project={consumer}`, then retry)"
            )
        }
        Hint::Doctor => " (gcp-kafka-auth-handler: Google refused its token; check the credentials with `gcp-kafka-auth-handler doctor`)".to_owned(),
        Hint::RegistryName => format!(
            " (gcp-kafka-auth-handler: check the registry name {name}; `gcloud beta managed-kafka schema-registries list --project={project} --location={location}` lists them)",
            project = name.project,
            location = name.location,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> RegistryName {
        "projects/p/locations/us-central1/schemaRegistries/r"
            .parse()
            .unwrap()
    }

    /// Translates a Google error answered to `method path` and returns (status, body).
    fn google(method: Method, path: &str, status: u16, body: Value) -> (u16, Value) {
        let name = name();
        let ctx = Context {
            route: Route::of(path),
            method: &method,
            registry: &name,
            principal: "robot@p.iam.gserviceaccount.com",
            quota_project: None,
        };
        let (status, json) = translate(status, body.to_string().as_bytes(), &ctx).unwrap();
        (status, serde_json::from_str(&json).unwrap())
    }

    fn error(code: u16, status: &str, message: &str) -> Value {
        serde_json::json!({"error": {"code": code, "message": message, "status": status}})
    }

    /// One test per row of [`TABLE`]: (test name, method, path, Google status, Google
    /// status name, message, expected status, expected error_code, expected message).
    macro_rules! row_tests {
        ($($test:ident: $method:ident $path:literal, $code:literal $status:literal $message:literal => $out:literal $error_code:literal $expected:expr;)*) => {
            $(
                #[test]
                fn $test() {
                    let (status, body) = google(Method::$method, $path, $code, error($code, $status, $message));
                    assert_eq!(status, $out);
                    assert_eq!(body, serde_json::json!({"error_code": $error_code, "message": $expected}));
                }
            )*
            /// Every row above is one of the table's, and every row of the table has a test.
            #[test]
            fn every_row_has_a_test() {
                let cases: &[(Method, &str, u16, &str)] = &[$((Method::$method, $path, $code, $message),)*];
                let mut covered = vec![false; TABLE.len()];
                for (method, path, code, message) in cases {
                    let _ = method;
                    let row = find_row(*code, None, message, Route::of(path))
                        .or_else(|| find_row(*code, Some("SERVICE_DISABLED"), message, Route::of(path)));
                    if let Some(row) = row {
                        let i = TABLE.iter().position(|r| std::ptr::eq(r, row)).unwrap();
                        covered[i] = true;
                    }
                }
                // SERVICE_DISABLED has its own test below (it needs `details`).
                covered[TABLE.iter().position(|r| r.reason == Some("SERVICE_DISABLED")).unwrap()] = true;
                let missing: Vec<_> = TABLE.iter().zip(&covered).filter(|(_, c)| !**c).map(|(r, _)| r.meaning).collect();
                assert!(missing.is_empty(), "rows without a test: {missing:?}");
            }
        };
    }

    row_tests! {
        version_not_found_is_40402: GET "/subjects/orders-version-value/versions/3", 404 "NOT_FOUND" "Version 3 not found for subject 'orders-version-value'." => 404 40402 "Version 3 not found for subject 'orders-version-value'.";
        subject_not_found_is_40401: GET "/subjects/orders-version-value/versions/3", 404 "NOT_FOUND" "Subject 'orders-version-value' not found." => 404 40401 "Subject 'orders-version-value' not found.";
        schema_id_not_found_is_40403: GET "/schemas/ids/7", 404 "NOT_FOUND" "Schema 7 not found." => 404 40403 "Schema 7 not found.";
        schema_not_under_subject_is_40403: POST "/subjects/orders-value", 404 "NOT_FOUND" "Schema not found." => 404 40403 "Schema not found.";
        unnamed_404_on_versions_is_subject_not_found: GET "/contexts/.ctx/subjects/s/versions", 404 "NOT_FOUND" "Resource 'x' was not found" => 404 40401 "Resource 'x' was not found";
        subject_config_not_set_is_40408: GET "/config/orders-value", 404 "NOT_FOUND" "Compatibility level not configured for 'orders-value'." => 404 40408 "Compatibility level not configured for 'orders-value'.";
        subject_mode_not_set_is_40409: GET "/mode/orders-value", 404 "NOT_FOUND" "Mode not configured for 'orders-value'." => 404 40409 "Mode not configured for 'orders-value'.";
        other_404_names_the_registry_fix: GET "/subjects", 404 "NOT_FOUND" "Resource 'projects/p/locations/us-central1/schemaRegistries/r' was not found" => 404 404 "Resource 'projects/p/locations/us-central1/schemaRegistries/r' was not found (gcp-kafka-auth-handler: check the registry name projects/p/locations/us-central1/schemaRegistries/r; `gcloud beta managed-kafka schema-registries list --project=p --location=us-central1` lists them)";
        conflict_is_incompatible_409: POST "/subjects/s/versions", 409 "ABORTED" "Schema being registered is incompatible with an earlier schema for subject 's'." => 409 409 "Schema being registered is incompatible with an earlier schema for subject 's'.";
        failed_precondition_incompatible_is_409: POST "/subjects/s/versions", 400 "FAILED_PRECONDITION" "The new schema is incompatible with version 1." => 409 409 "The new schema is incompatible with version 1.";
        bad_compatibility_level_is_42203: PUT "/config", 400 "INVALID_ARGUMENT" "Invalid compatibility level 'SIDEWAYS'." => 422 42203 "Invalid compatibility level 'SIDEWAYS'.";
        bad_mode_is_42204: PUT "/mode", 400 "INVALID_ARGUMENT" "Invalid mode 'OFF'." => 422 42204 "Invalid mode 'OFF'.";
        bad_version_is_42202: GET "/subjects/s/versions/x", 400 "INVALID_ARGUMENT" "Invalid version 'x'." => 422 42202 "Invalid version 'x'.";
        bad_schema_is_42201: POST "/subjects/s/versions", 400 "INVALID_ARGUMENT" "Invalid schema: not valid Avro JSON." => 422 42201 "Invalid schema: not valid Avro JSON.";
        other_400_stays_400: POST "/subjects/s/versions", 400 "INVALID_ARGUMENT" "Invalid JSON payload received." => 400 400 "Invalid JSON payload received.";
        unauthenticated_is_40101_with_doctor: GET "/subjects", 401 "UNAUTHENTICATED" "Request had invalid authentication credentials." => 401 40101 "Request had invalid authentication credentials. (gcp-kafka-auth-handler: Google refused its token; check the credentials with `gcp-kafka-auth-handler doctor`)";
        permission_denied_on_read_names_the_viewer_role: GET "/subjects", 403 "PERMISSION_DENIED" "Permission denied." => 403 40301 "Permission denied. (gcp-kafka-auth-handler: robot@p.iam.gserviceaccount.com needs roles/managedkafka.schemaRegistryViewer to read schema registry projects/p/locations/us-central1/schemaRegistries/r: gcloud projects add-iam-policy-binding p --member=<that principal> --role=roles/managedkafka.schemaRegistryViewer)";
        rate_limited_is_42901: GET "/subjects", 429 "RESOURCE_EXHAUSTED" "Quota exceeded." => 429 42901 "Quota exceeded.";
        internal_is_50001: GET "/subjects", 500 "INTERNAL" "Internal error." => 500 50001 "Internal error.";
        unavailable_is_50003: GET "/subjects", 503 "UNAVAILABLE" "The service is currently unavailable." => 503 50003 "The service is currently unavailable.";
        deadline_is_50002: GET "/subjects", 504 "DEADLINE_EXCEEDED" "Deadline exceeded." => 504 50002 "Deadline exceeded.";
    }

    #[test]
    fn permission_denied_on_write_names_the_editor_role() {
        let (status, body) = google(
            Method::POST,
            "/subjects/s/versions",
            403,
            error(403, "PERMISSION_DENIED", "Permission denied."),
        );
        assert_eq!(status, 403);
        assert_eq!(body["error_code"], 40301);
        assert_eq!(
            body["message"],
            "Permission denied. (gcp-kafka-auth-handler: robot@p.iam.gserviceaccount.com needs roles/managedkafka.schemaRegistryEditor to change schema registry projects/p/locations/us-central1/schemaRegistries/r: gcloud projects add-iam-policy-binding p --member=<that principal> --role=roles/managedkafka.schemaRegistryEditor)"
        );
    }

    #[test]
    fn service_disabled_is_40301_with_the_enable_command() {
        let body = serde_json::json!({"error": {
            "code": 403, "message": "API disabled.", "status": "PERMISSION_DENIED",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
                         "metadata": {"consumer": "projects/123"}}],
        }});
        let (status, body) = google(Method::GET, "/subjects", 403, body);
        assert_eq!(status, 403);
        assert_eq!(
            body,
            serde_json::json!({"error_code": 40301, "message": "API disabled. (gcp-kafka-auth-handler: enable the API with `gcloud services enable managedkafka.googleapis.com --project=123`, then retry)"})
        );
    }

    #[test]
    fn statuses_outside_the_table_keep_their_status_as_the_code() {
        let (status, body) = google(
            Method::GET,
            "/subjects",
            418,
            error(418, "UNKNOWN", "Teapot."),
        );
        assert_eq!(
            (status, body),
            (
                418,
                serde_json::json!({"error_code": 418, "message": "Teapot."})
            )
        );
    }

    #[test]
    fn bodies_that_are_not_json_keep_their_start_as_the_message() {
        let name = name();
        let ctx = Context {
            route: Route::Subjects,
            method: &Method::GET,
            registry: &name,
            principal: "p",
            quota_project: None,
        };
        let (status, json) = translate(502, b"<html>Bad Gateway</html>", &ctx).unwrap();
        assert_eq!(status, 502);
        assert_eq!(
            json,
            r#"{"error_code":502,"message":"the schema registry answered HTTP 502: <html>Bad Gateway</html>"}"#
        );
    }

    #[test]
    fn confluent_shaped_bodies_pass_through() {
        let name = name();
        let ctx = Context {
            route: Route::Subject,
            method: &Method::GET,
            registry: &name,
            principal: "p",
            quota_project: None,
        };
        assert!(
            translate(
                404,
                br#"{"error_code":40401,"message":"Subject not found."}"#,
                &ctx
            )
            .is_none()
        );
    }

    #[test]
    fn routes_are_classified_with_and_without_a_context() {
        for (path, route) in [
            ("/subjects", Route::Subjects),
            ("/subjects/s", Route::Subject),
            ("/subjects/s/versions", Route::Versions),
            ("/subjects/s/versions/latest/schema", Route::Version),
            ("/schemas/ids/1", Route::SchemaId),
            ("/schemas/ids/1/versions", Route::SchemaIdVersions),
            ("/schemas/types", Route::Schemas),
            ("/config", Route::Config),
            ("/config/s", Route::SubjectConfig),
            ("/mode", Route::Mode),
            ("/mode/s", Route::SubjectMode),
            (
                "/compatibility/subjects/s/versions/latest",
                Route::Compatibility,
            ),
            ("/contexts", Route::Contexts),
            ("/contexts/.ctx/subjects/s/versions/1", Route::Version),
            ("/contexts/.ctx/schemas/ids/4", Route::SchemaId),
            ("/v1/anything", Route::Other),
        ] {
            assert_eq!(Route::of(path), route, "{path}");
        }
    }
}
