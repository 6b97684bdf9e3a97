//! Managed Kafka's schema registry: the Confluent REST API under
//! `/v1/projects/{p}/locations/{l}/schemaRegistries/{r}`, as Google serves it.
//!
//! It knows the registries it is told about ([`crate::FakeGoogle::add_schema_registry`] or
//! `POST /_fake/schema-registry/registry {"name"}`), demands a bearer token the fake issued
//! (the raw Google token: a Kafka token is refused like any unknown one), stores subjects,
//! versions and schema ids per registry and context, and answers errors in Google's shape
//! (`{"error":{"code","message","status"}}`), never Confluent's. On command
//! ([`crate::FakeGoogle::set_schema_registry_fault`], or `POST /_fake/schema-registry/fault`
//! with the Managed Kafka fault syntax) every call fails with 403 `IAM_PERMISSION_DENIED`,
//! 403 `SERVICE_DISABLED` or any status.
//!
//! Google does not document its registry's error messages; the fake's are written like
//! Google's other APIs' (a sentence naming the thing in quotes). Compatibility is checked for
//! Avro records the way `BACKWARD` means it (a reader with the new schema must read data
//! written with the latest one: no new field without a default, no field changing type);
//! `NONE` accepts anything, and the other levels are checked as `BACKWARD`. Protobuf schemas
//! are checked for being Protobuf only (a `syntax` or `message` statement, or a Base64
//! `FileDescriptorProto` as confluent-kafka-python sends them). JSON Schema is
//! refused, as Google's documentation says the registry does not support it.

// Validation returns the refusal to send as its error: a test fake answers a handful of calls,
// so the size of a `Result` carrying a `Response` costs nothing worth boxing for.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::{any, get, post};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::iam::UNAUTHENTICATED;
use crate::managed_kafka::{ManagedKafkaFault, SERVICE};
use crate::respond;
use crate::state::{Shared, now_unix, numeric_id};

/// The permission reading a registry needs.
pub const GET_PERMISSION: &str = "managedkafka.schemaRegistries.get";

/// Every registry and the current fault.
#[derive(Debug, Default)]
pub(crate) struct Registries {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    registries: HashMap<String, Registry>,
    fault: Option<ManagedKafkaFault>,
    /// Registry API calls received (answered or refused), the registry resource's included.
    calls: u64,
}

#[derive(Debug)]
struct Registry {
    /// Schemas by id - 1.
    schemas: Vec<SchemaRecord>,
    /// (context, subject) → versions.
    subjects: BTreeMap<(String, String), Vec<Version>>,
    compatibility: String,
    subject_compatibility: HashMap<(String, String), String>,
    mode: String,
    subject_mode: HashMap<(String, String), String>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            schemas: Vec::new(),
            subjects: BTreeMap::new(),
            compatibility: "BACKWARD".to_owned(),
            subject_compatibility: HashMap::new(),
            mode: "READWRITE".to_owned(),
            subject_mode: HashMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct SchemaRecord {
    schema: String,
    schema_type: String,
    references: Value,
}

#[derive(Debug, Clone)]
struct Version {
    version: u32,
    id: u64,
    deleted: bool,
}

impl Registries {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn add(&self, name: &str) {
        self.lock().registries.entry(name.to_owned()).or_default();
    }

    pub(crate) fn set_fault(&self, fault: Option<ManagedKafkaFault>) {
        self.lock().fault = fault;
    }

    pub(crate) fn calls(&self) -> u64 {
        self.lock().calls
    }
}

#[derive(Clone)]
struct Api {
    shared: Arc<Shared>,
    registries: Arc<Registries>,
}

const PREFIX: &str = "/v1/projects/{project}/locations/{location}/schemaRegistries/{registry}";

/// The registry API and its control endpoints.
pub(crate) fn router<S>(shared: Arc<Shared>, registries: Arc<Registries>) -> Router<S> {
    Router::new()
        .route(PREFIX, get(get_registry))
        .route(&format!("{PREFIX}/{{*rest}}"), any(registry_call))
        .route("/_fake/schema-registry/registry", post(add_registry))
        .route("/_fake/schema-registry/fault", post(set_fault))
        .with_state(Api { shared, registries })
}

/// Google's error body.
fn error(status: StatusCode, message: &str) -> Response {
    respond::api_error(status, message)
}

fn not_found(message: String) -> Response {
    error(StatusCode::NOT_FOUND, &message)
}

fn invalid(message: String) -> Response {
    error(StatusCode::BAD_REQUEST, &message)
}

/// The bearer check and the standing fault, before any registry work. `Err` is the answer.
fn admit(api: &Api, name: &str, project: &str, headers: &HeaderMap) -> Result<(), Response> {
    let fault = {
        let mut inner = api.registries.lock();
        inner.calls += 1;
        inner.fault.clone()
    };
    let caller_ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| api.shared.token(token.trim()))
        .is_some_and(|record| record.issued.expires_at_unix > now_unix());
    if !caller_ok {
        return Err(respond::api_error(
            StatusCode::UNAUTHORIZED,
            UNAUTHENTICATED,
        ));
    }
    match fault {
        None => Ok(()),
        Some(ManagedKafkaFault::PermissionDenied) => Err(respond::json(
            StatusCode::FORBIDDEN,
            &json!({"error": {
                "code": 403,
                "message": format!("Permission '{GET_PERMISSION}' denied on resource '//{SERVICE}/{name}' (or it may not exist)."),
                "status": "PERMISSION_DENIED",
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "IAM_PERMISSION_DENIED",
                    "domain": SERVICE,
                    "metadata": {"permission": GET_PERMISSION, "resource": name},
                }],
            }}),
        )),
        Some(ManagedKafkaFault::ServiceDisabled) => {
            let consumer = headers
                .get("x-goog-user-project")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(project);
            let number = numeric_id(consumer);
            Err(respond::json(
                StatusCode::FORBIDDEN,
                &json!({"error": {
                    "code": 403,
                    "message": format!("Managed Service for Apache Kafka API has not been used in project {number} before or it is disabled."),
                    "status": "PERMISSION_DENIED",
                    "details": [{
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "SERVICE_DISABLED",
                        "domain": "googleapis.com",
                        "metadata": {"service": SERVICE, "consumer": format!("projects/{number}")},
                    }],
                }}),
            ))
        }
        Some(ManagedKafkaFault::Status(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Err(respond::api_error(
                status,
                "The service is currently unavailable.",
            ))
        }
    }
}

async fn get_registry(
    State(api): State<Api>,
    Path((project, location, registry)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let name = format!("projects/{project}/locations/{location}/schemaRegistries/{registry}");
    if let Err(refusal) = admit(&api, &name, &project, &headers) {
        return refusal;
    }
    if !api.registries.lock().registries.contains_key(&name) {
        return not_found(format!("Resource '{name}' was not found"));
    }
    respond::json(
        StatusCode::OK,
        &json!({"name": name, "contexts": [format!("{name}/contexts/.")]}),
    )
}

async fn registry_call(
    State(api): State<Api>,
    Path((project, location, registry, rest)): Path<(String, String, String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let name = format!("projects/{project}/locations/{location}/schemaRegistries/{registry}");
    if let Err(refusal) = admit(&api, &name, &project, &headers) {
        return refusal;
    }
    let mut inner = api.registries.lock();
    let Some(registry) = inner.registries.get_mut(&name) else {
        return not_found(format!("Resource '{name}' was not found"));
    };
    let segments: Vec<String> = rest
        .trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let mut segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let mut context = ".".to_owned();
    if segments.first() == Some(&"contexts") && segments.len() > 2 {
        context = segments[1].to_owned();
        segments.drain(..2);
    }
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return invalid(format!("Invalid JSON payload received. {e}")),
        }
    };
    registry.call(&method, &context, &segments, &body)
}

fn ok(body: Value) -> Response {
    respond::json(StatusCode::OK, &body)
}

impl Registry {
    fn call(&mut self, method: &Method, ctx: &str, path: &[&str], body: &Value) -> Response {
        let key = |s: &str| (ctx.to_owned(), s.to_owned());
        match (method.as_str(), path) {
            ("GET", ["contexts"]) => {
                let mut contexts: Vec<&str> =
                    self.subjects.keys().map(|(c, _)| c.as_str()).collect();
                contexts.push(".");
                contexts.sort_unstable();
                contexts.dedup();
                ok(json!(contexts))
            }
            ("GET", ["subjects"]) => ok(json!(
                self.subjects
                    .iter()
                    .filter(|((c, _), v)| c == ctx && v.iter().any(|v| !v.deleted))
                    .map(|((_, s), _)| s.clone())
                    .collect::<Vec<_>>()
            )),
            ("GET", ["subjects", s, "versions"]) => match self.live_versions(&key(s)) {
                Some(v) => ok(json!(v.iter().map(|v| v.version).collect::<Vec<_>>())),
                None => subject_not_found(s),
            },
            ("POST", ["subjects", s, "versions"]) => self.register(&key(s), body),
            ("GET", ["subjects", s, "versions", v]) => self.version_answer(&key(s), v, false),
            ("GET", ["subjects", s, "versions", v, "schema"]) => {
                self.version_answer(&key(s), v, true)
            }
            ("DELETE", ["subjects", s, "versions", v]) => {
                let found = match self.find_version(&key(s), v) {
                    Ok(found) => found.version,
                    Err(answer) => return answer,
                };
                if let Some(versions) = self.subjects.get_mut(&key(s)) {
                    versions
                        .iter_mut()
                        .filter(|x| x.version == found)
                        .for_each(|x| x.deleted = true);
                }
                ok(json!(found))
            }
            ("POST", ["subjects", s]) => {
                let Some(versions) = self.live_versions(&key(s)) else {
                    return subject_not_found(s);
                };
                let wanted = match parse_schema(body) {
                    Ok(wanted) => wanted,
                    Err(answer) => return answer,
                };
                let found = versions
                    .iter()
                    .find(|v| self.schemas[v.id as usize - 1] == wanted);
                match found {
                    Some(v) => ok(json!({
                        "subject": s, "version": v.version, "id": v.id, "schema": wanted.schema,
                    })),
                    None => not_found("Schema not found.".to_owned()),
                }
            }
            ("DELETE", ["subjects", s]) => match self.live_versions(&key(s)) {
                Some(versions) => {
                    let numbers: Vec<u32> = versions.iter().map(|v| v.version).collect();
                    if let Some(all) = self.subjects.get_mut(&key(s)) {
                        all.iter_mut().for_each(|v| v.deleted = true);
                    }
                    ok(json!(numbers))
                }
                None => subject_not_found(s),
            },
            ("GET", ["schemas", "types"]) => ok(json!(["AVRO", "PROTOBUF"])),
            ("GET", ["schemas", "ids", id, rest @ ..]) => {
                let Some(record) = id
                    .parse::<usize>()
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|i| self.schemas.get(i))
                else {
                    return not_found(format!("Schema {id} not found."));
                };
                let id: u64 = id.parse().unwrap_or(0);
                let uses = || {
                    self.subjects
                        .iter()
                        .flat_map(move |((_, s), vs)| {
                            vs.iter()
                                .filter(move |v| v.id == id && !v.deleted)
                                .map(move |v| (s.clone(), v.version))
                        })
                        .collect::<Vec<_>>()
                };
                match rest {
                    [] => {
                        let mut answer = json!({"schema": record.schema});
                        if record.schema_type != "AVRO" {
                            answer["schemaType"] = json!(record.schema_type);
                        }
                        if record.references.as_array().is_some_and(|r| !r.is_empty()) {
                            answer["references"] = record.references.clone();
                        }
                        ok(answer)
                    }
                    ["versions"] => ok(json!(
                        uses()
                            .into_iter()
                            .map(|(s, v)| json!({"subject": s, "version": v}))
                            .collect::<Vec<_>>()
                    )),
                    ["subjects"] => {
                        let mut subjects: Vec<String> =
                            uses().into_iter().map(|(s, _)| s).collect();
                        subjects.dedup();
                        ok(json!(subjects))
                    }
                    _ => not_found(format!(
                        "Method not found: schemas/ids/{id}/{}",
                        rest.join("/")
                    )),
                }
            }
            ("GET", ["config"]) => ok(json!({"compatibilityLevel": self.compatibility})),
            ("PUT", ["config"]) => match level(body) {
                Ok(level) => {
                    self.compatibility = level.clone();
                    ok(json!({"compatibility": level}))
                }
                Err(answer) => answer,
            },
            ("GET", ["config", s]) => match self.subject_compatibility.get(&key(s)) {
                Some(level) => ok(json!({"compatibilityLevel": level})),
                None => not_found(format!("Compatibility level not configured for '{s}'.")),
            },
            ("PUT", ["config", s]) => match level(body) {
                Ok(level) => {
                    self.subject_compatibility.insert(key(s), level.clone());
                    ok(json!({"compatibility": level}))
                }
                Err(answer) => answer,
            },
            ("DELETE", ["config", s]) => match self.subject_compatibility.remove(&key(s)) {
                Some(level) => ok(json!({"compatibilityLevel": level})),
                None => not_found(format!("Compatibility level not configured for '{s}'.")),
            },
            ("GET", ["mode"]) => ok(json!({"mode": self.mode})),
            ("PUT", ["mode"]) => match mode(body) {
                Ok(mode) => {
                    self.mode = mode.clone();
                    ok(json!({"mode": mode}))
                }
                Err(answer) => answer,
            },
            ("GET", ["mode", s]) => match self.subject_mode.get(&key(s)) {
                Some(mode) => ok(json!({"mode": mode})),
                None => not_found(format!("Mode not configured for '{s}'.")),
            },
            ("PUT", ["mode", s]) => match mode(body) {
                Ok(mode) => {
                    self.subject_mode.insert(key(s), mode.clone());
                    ok(json!({"mode": mode}))
                }
                Err(answer) => answer,
            },
            ("POST", ["compatibility", "subjects", s, "versions", v]) => {
                let against = match self.find_version(&key(s), v) {
                    Ok(found) => self.schemas[found.id as usize - 1].clone(),
                    Err(answer) => return answer,
                };
                let candidate = match parse_schema(body) {
                    Ok(candidate) => candidate,
                    Err(answer) => return answer,
                };
                let level = self.level_for(&key(s));
                ok(json!({"is_compatible": compatible(&level, &against, &candidate).is_ok()}))
            }
            _ => not_found(format!("Method not found: {} {}", method, path.join("/"))),
        }
    }

    fn live_versions(&self, key: &(String, String)) -> Option<Vec<Version>> {
        let live: Vec<Version> = self
            .subjects
            .get(key)?
            .iter()
            .filter(|v| !v.deleted)
            .cloned()
            .collect();
        (!live.is_empty()).then_some(live)
    }

    fn level_for(&self, key: &(String, String)) -> String {
        self.subject_compatibility
            .get(key)
            .cloned()
            .unwrap_or_else(|| self.compatibility.clone())
    }

    fn find_version(&self, key: &(String, String), v: &str) -> Result<Version, Response> {
        let Some(versions) = self.live_versions(key) else {
            return Err(subject_not_found(&key.1));
        };
        let found = if v == "latest" || v == "-1" {
            versions.last().cloned()
        } else {
            let Ok(n) = v.parse::<u32>() else {
                return Err(invalid(format!(
                    "Invalid version '{v}': a version is a positive integer or 'latest'."
                )));
            };
            versions.iter().find(|x| x.version == n).cloned()
        };
        found.ok_or_else(|| not_found(format!("Version {v} not found for subject '{}'.", key.1)))
    }

    fn version_answer(&self, key: &(String, String), v: &str, raw: bool) -> Response {
        let found = match self.find_version(key, v) {
            Ok(found) => found,
            Err(answer) => return answer,
        };
        let record = &self.schemas[found.id as usize - 1];
        if raw {
            return respond::text(
                StatusCode::OK,
                "application/vnd.schemaregistry.v1+json",
                record.schema.clone(),
            );
        }
        let mut answer = json!({
            "subject": key.1, "version": found.version, "id": found.id, "schema": record.schema,
        });
        if record.schema_type != "AVRO" {
            answer["schemaType"] = json!(record.schema_type);
        }
        ok(answer)
    }

    fn register(&mut self, key: &(String, String), body: &Value) -> Response {
        if self.subject_mode.get(key).unwrap_or(&self.mode) == "READONLY" {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("Subject '{}' is in read-only mode.", key.1),
            );
        }
        let record = match parse_schema(body) {
            Ok(record) => record,
            Err(answer) => return answer,
        };
        let live = self.live_versions(key).unwrap_or_default();
        // The same schema again under the subject: its existing id, no new version.
        if let Some(v) = live
            .iter()
            .find(|v| self.schemas[v.id as usize - 1] == record)
        {
            return ok(json!({"id": v.id}));
        }
        if let Some(latest) = live.last() {
            let level = self.level_for(key);
            if let Err(why) = compatible(&level, &self.schemas[latest.id as usize - 1], &record) {
                return error(
                    StatusCode::CONFLICT,
                    &format!(
                        "Schema being registered is incompatible with an earlier schema for subject '{}': {why}",
                        key.1
                    ),
                );
            }
        }
        let id = match self.schemas.iter().position(|s| *s == record) {
            Some(i) => i as u64 + 1,
            None => {
                self.schemas.push(record);
                self.schemas.len() as u64
            }
        };
        let versions = self.subjects.entry(key.clone()).or_default();
        let version = versions.last().map_or(1, |v| v.version + 1);
        versions.push(Version {
            version,
            id,
            deleted: false,
        });
        ok(json!({"id": id}))
    }
}

fn subject_not_found(subject: &str) -> Response {
    not_found(format!("Subject '{subject}' not found."))
}

/// The schema of a registration, lookup or compatibility body, validated.
fn parse_schema(body: &Value) -> Result<SchemaRecord, Response> {
    let Some(schema) = body["schema"].as_str() else {
        return Err(invalid(
            "Invalid schema: the request has no 'schema' string.".to_owned(),
        ));
    };
    let schema_type = body["schemaType"].as_str().unwrap_or("AVRO").to_owned();
    match schema_type.as_str() {
        "AVRO" => {
            let parsed: Value = serde_json::from_str(schema)
                .map_err(|e| invalid(format!("Invalid schema: not valid Avro JSON ({e}).")))?;
            let ok = match &parsed {
                Value::String(_) | Value::Array(_) => true,
                Value::Object(o) => o.get("type").is_some(),
                _ => false,
            };
            if !ok {
                return Err(invalid(
                    "Invalid schema: an Avro schema is a type name, a union or an object with a 'type'.".to_owned(),
                ));
            }
        }
        "PROTOBUF" => {
            // Text (`syntax = ...; message ...`) or, as confluent-kafka-python sends it, a
            // Base64 `FileDescriptorProto`.
            let text = schema.contains("syntax") || schema.contains("message ");
            let descriptor = !schema.is_empty()
                && base64::engine::general_purpose::STANDARD
                    .decode(schema.trim())
                    .is_ok_and(|bytes| !bytes.is_empty());
            if !(text || descriptor) {
                return Err(invalid(
                    "Invalid schema: not a Protobuf schema (no syntax or message statement, not a Base64 FileDescriptorProto)."
                        .to_owned(),
                ));
            }
        }
        other => {
            return Err(invalid(format!(
                "Invalid schema: schema type '{other}' is not supported; use AVRO or PROTOBUF."
            )));
        }
    }
    Ok(SchemaRecord {
        schema: schema.to_owned(),
        schema_type,
        references: body.get("references").cloned().unwrap_or_else(|| json!([])),
    })
}

/// `Ok` when `candidate` may follow `latest` under `level` (see the module docs).
fn compatible(level: &str, latest: &SchemaRecord, candidate: &SchemaRecord) -> Result<(), String> {
    if level == "NONE" || latest.schema_type != "AVRO" || candidate.schema_type != "AVRO" {
        return Ok(());
    }
    let fields = |s: &SchemaRecord| -> Option<Vec<Value>> {
        let parsed: Value = serde_json::from_str(&s.schema).ok()?;
        (parsed["type"] == "record")
            .then(|| parsed["fields"].as_array().cloned().unwrap_or_default())
    };
    let (Some(old), Some(new)) = (fields(latest), fields(candidate)) else {
        return Ok(());
    };
    for field in &new {
        let name = &field["name"];
        match old.iter().find(|f| &f["name"] == name) {
            None if field.get("default").is_none() => {
                return Err(format!(
                    "new field {name} has no default, so data written with the earlier schema cannot be read"
                ));
            }
            Some(before) if before["type"] != field["type"] => {
                return Err(format!("field {name} changed its type"));
            }
            _ => {}
        }
    }
    Ok(())
}

const LEVELS: [&str; 7] = [
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
];

fn level(body: &Value) -> Result<String, Response> {
    let level = body["compatibility"].as_str().unwrap_or_default();
    if LEVELS.contains(&level) {
        Ok(level.to_owned())
    } else {
        Err(invalid(format!(
            "Invalid compatibility level '{level}'; expected one of {}.",
            LEVELS.join(", ")
        )))
    }
}

fn mode(body: &Value) -> Result<String, Response> {
    let mode = body["mode"].as_str().unwrap_or_default();
    if ["READWRITE", "READONLY", "IMPORT"].contains(&mode) {
        Ok(mode.to_owned())
    } else {
        Err(invalid(format!(
            "Invalid mode '{mode}'; expected READWRITE, READONLY or IMPORT."
        )))
    }
}

#[derive(Deserialize)]
struct AddRegistry {
    name: String,
}

async fn add_registry(State(api): State<Api>, body: Bytes) -> Response {
    match serde_json::from_slice::<AddRegistry>(&body) {
        Ok(add) => {
            api.registries.add(&add.name);
            respond::json(StatusCode::OK, &json!({ "name": add.name }))
        }
        Err(e) => respond::json(
            StatusCode::BAD_REQUEST,
            &json!({ "error": format!("bad JSON body: {e}; send {{\"name\":\"projects/P/locations/L/schemaRegistries/R\"}}") }),
        ),
    }
}

#[derive(Deserialize)]
struct SetFault {
    fault: String,
}

async fn set_fault(State(api): State<Api>, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<SetFault>(&body)
        .map_err(|e| format!("bad JSON body: {e}"))
        .and_then(|f| match f.fault.as_str() {
            "none" => Ok(None),
            other => other.parse().map(Some),
        });
    match parsed {
        Ok(fault) => {
            api.registries.set_fault(fault);
            respond::json(StatusCode::OK, &json!({ "ok": true }))
        }
        Err(e) => respond::json(StatusCode::BAD_REQUEST, &json!({ "error": e })),
    }
}
