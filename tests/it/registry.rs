//! The schema registry endpoint (library module `registry`) in process, over real HTTP on
//! loopback against fake-google's registry: every Confluent route forwarded with the path
//! prefix and the provider's bearer token, Google's errors in Confluent's shape, the startup
//! check's messages, a token refresh across an expiry, the client's `Authorization` dropped,
//! body caps, `Host` and browser checks, the schema-by-id cache and its metrics; then the
//! binary's `schema-registry` subcommand, `serve --schema-registry` and
//! `client-config --client schema-registry`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fake_google::{FakeGoogle, Fault, ManagedKafkaFault};
use gcp_kafka_auth_handler::registry::{Builder, RegistryError, SchemaRegistryEndpoint};
use gcp_kafka_auth_handler::{Env, KafkaTokenProvider};
use serde_json::{Value, json};

use crate::support::{Sidecar, SidecarEnv, get_with_host, raw_request, run};

const REGISTRY: &str =
    "projects/test-project/locations/us-central1/schemaRegistries/orders_registry";
const PREFIX: &str =
    "/v1/projects/test-project/locations/us-central1/schemaRegistries/orders_registry";
const CONFLUENT: &str = "application/vnd.schemaregistry.v1+json";
const PRINCIPAL: &str = fake_google::DEFAULT_METADATA_EMAIL;

const ORDER_V1: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}"#;
const ORDER_V2: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"},{"name":"note","type":"string","default":""}]}"#;
const ORDER_BAD: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"},{"name":"qty","type":"int"}]}"#;

/// The endpoint served in this process for fake-google's registry, stopped on drop.
struct Local {
    addr: SocketAddr,
    endpoint: SchemaRegistryEndpoint,
    provider: KafkaTokenProvider,
    server: tokio::task::JoinHandle<()>,
    _env: SidecarEnv,
}

impl Drop for Local {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Local {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn provider(env: &SidecarEnv) -> KafkaTokenProvider {
    KafkaTokenProvider::builder()
        .with_env(Env::from_pairs(env.vars.clone()))
        .build()
        .expect("the provider builds")
}

/// fake-google with the registry, and the endpoint for it configured by `configure`.
async fn start(configure: impl FnOnce(Builder) -> Builder) -> (FakeGoogle, Local) {
    let google = FakeGoogle::start().await;
    google.add_schema_registry(REGISTRY);
    let local = serve(&google, configure).await;
    (google, local)
}

async fn serve(google: &FakeGoogle, configure: impl FnOnce(Builder) -> Builder) -> Local {
    let env = SidecarEnv::new(google);
    let provider = provider(&env);
    let builder = SchemaRegistryEndpoint::builder(provider.clone(), REGISTRY.parse().unwrap())
        .with_endpoint(google.base_url());
    let endpoint = configure(builder).build().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = endpoint.router();
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Local {
        addr,
        endpoint,
        provider,
        server,
        _env: env,
    }
}

/// (status, Content-Type, body as JSON or as a string) of `method path` with `body`.
async fn call(
    local: &Local,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, String, Value) {
    let client = reqwest::Client::new();
    let mut request = client
        .request(method.parse().unwrap(), local.url(path))
        .header("Accept", CONFLUENT);
    if let Some(body) = body {
        request = request
            .header("Content-Type", CONFLUENT)
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, content_type, value)
}

/// The registry calls fake-google received, as `METHOD path` without the prefix.
fn registry_calls(google: &FakeGoogle) -> Vec<fake_google::RecordedRequest> {
    google
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with(PREFIX))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_confluent_route_is_forwarded_under_the_registry_path_with_a_bearer_token() {
    let (google, local) = start(|b| b).await;
    let schema = |s: &str| json!({ "schema": s });
    // (method, path, body, expected status, expected answer)
    let steps: Vec<(&str, &str, Option<Value>, u16, Value)> = vec![
        ("GET", "/subjects", None, 200, json!([])),
        (
            "POST",
            "/subjects/orders-value/versions",
            Some(schema(ORDER_V1)),
            200,
            json!({"id": 1}),
        ),
        (
            "POST",
            "/subjects/orders-value/versions",
            Some(schema(ORDER_V1)),
            200,
            json!({"id": 1}),
        ),
        (
            "POST",
            "/subjects/orders-value/versions",
            Some(schema(ORDER_V2)),
            200,
            json!({"id": 2}),
        ),
        ("GET", "/subjects", None, 200, json!(["orders-value"])),
        (
            "GET",
            "/subjects/orders-value/versions",
            None,
            200,
            json!([1, 2]),
        ),
        (
            "GET",
            "/subjects/orders-value/versions/1",
            None,
            200,
            json!({"subject": "orders-value", "version": 1, "id": 1, "schema": ORDER_V1}),
        ),
        (
            "GET",
            "/subjects/orders-value/versions/latest/schema",
            None,
            200,
            serde_json::from_str(ORDER_V2).unwrap(),
        ),
        (
            "POST",
            "/subjects/orders-value",
            Some(schema(ORDER_V1)),
            200,
            json!({"subject": "orders-value", "version": 1, "id": 1, "schema": ORDER_V1}),
        ),
        (
            "GET",
            "/schemas/ids/2",
            None,
            200,
            json!({"schema": ORDER_V2}),
        ),
        (
            "GET",
            "/schemas/ids/1/versions",
            None,
            200,
            json!([{"subject": "orders-value", "version": 1}]),
        ),
        (
            "GET",
            "/schemas/types",
            None,
            200,
            json!(["AVRO", "PROTOBUF"]),
        ),
        (
            "GET",
            "/config",
            None,
            200,
            json!({"compatibilityLevel": "BACKWARD"}),
        ),
        (
            "PUT",
            "/config",
            Some(json!({"compatibility": "FULL"})),
            200,
            json!({"compatibility": "FULL"}),
        ),
        (
            "PUT",
            "/config/orders-value",
            Some(json!({"compatibility": "NONE"})),
            200,
            json!({"compatibility": "NONE"}),
        ),
        (
            "GET",
            "/config/orders-value",
            None,
            200,
            json!({"compatibilityLevel": "NONE"}),
        ),
        (
            "POST",
            "/compatibility/subjects/orders-value/versions/latest",
            Some(schema(ORDER_BAD)),
            200,
            json!({"is_compatible": true}),
        ),
        ("GET", "/mode", None, 200, json!({"mode": "READWRITE"})),
        (
            "PUT",
            "/mode/orders-value",
            Some(json!({"mode": "READONLY"})),
            200,
            json!({"mode": "READONLY"}),
        ),
        (
            "GET",
            "/mode/orders-value",
            None,
            200,
            json!({"mode": "READONLY"}),
        ),
        (
            "POST",
            "/contexts/.staging/subjects/payments-value/versions",
            Some(schema(ORDER_V1)),
            200,
            json!({"id": 1}),
        ),
        (
            "GET",
            "/contexts/.staging/subjects",
            None,
            200,
            json!(["payments-value"]),
        ),
        ("GET", "/contexts", None, 200, json!([".", ".staging"])),
        (
            "DELETE",
            "/subjects/orders-value/versions/1",
            None,
            200,
            json!(1),
        ),
        ("DELETE", "/subjects/orders-value", None, 200, json!([2])),
        ("GET", "/subjects", None, 200, json!([])),
    ];
    for (method, path, body, status, expected) in &steps {
        let (got_status, content_type, got) = call(&local, method, path, body.clone()).await;
        assert_eq!((got_status, &got), (*status, expected), "{method} {path}");
        assert!(
            content_type.starts_with("application/"),
            "{method} {path}: {content_type}"
        );
    }
    let calls = registry_calls(&google);
    assert_eq!(calls.len(), steps.len());
    for ((method, path, body, _, _), call) in steps.iter().zip(&calls) {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        assert_eq!(call.method, *method);
        assert_eq!(call.path, format!("{PREFIX}{path}"));
        assert_eq!(call.query, query);
        let token = call
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .expect("a bearer token");
        assert_eq!(google.lookup(token).unwrap().principal, PRINCIPAL);
        assert_eq!(call.header("accept"), Some(CONFLUENT));
        assert_eq!(call.header("x-goog-user-project"), None);
        match body {
            Some(body) => {
                assert_eq!(call.header("content-type"), Some(CONFLUENT));
                assert_eq!(call.body, body.to_string());
            }
            None => assert_eq!(call.body, ""),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_project_is_sent_as_x_goog_user_project() {
    let (google, local) = start(|b| b.with_quota_project("billing-project")).await;
    assert_eq!(call(&local, "GET", "/subjects", None).await.0, 200);
    let calls = registry_calls(&google);
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].header("x-goog-user-project"),
        Some("billing-project")
    );
}

/// (method, path, body, expected status, expected `error_code`, expected message)
type ErrorCase = (
    &'static str,
    &'static str,
    Option<Value>,
    u16,
    u32,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_errors_reach_clients_as_confluent_error_codes() {
    let (_google, local) = start(|b| b).await;
    let schema = |s: &str| Some(json!({ "schema": s }));
    assert_eq!(
        call(
            &local,
            "POST",
            "/subjects/orders-value/versions",
            schema(ORDER_V1)
        )
        .await
        .0,
        200
    );
    let cases: Vec<ErrorCase> = vec![
        (
            "GET",
            "/subjects/nope/versions",
            None,
            404,
            40401,
            "Subject 'nope' not found.",
        ),
        (
            "GET",
            "/subjects/orders-value/versions/9",
            None,
            404,
            40402,
            "Version 9 not found for subject 'orders-value'.",
        ),
        (
            "GET",
            "/schemas/ids/77",
            None,
            404,
            40403,
            "Schema 77 not found.",
        ),
        (
            "POST",
            "/subjects/orders-value",
            schema(ORDER_V2),
            404,
            40403,
            "Schema not found.",
        ),
        (
            "GET",
            "/config/orders-value",
            None,
            404,
            40408,
            "Compatibility level not configured for 'orders-value'.",
        ),
        (
            "GET",
            "/mode/orders-value",
            None,
            404,
            40409,
            "Mode not configured for 'orders-value'.",
        ),
        (
            "POST",
            "/subjects/orders-value/versions",
            schema(ORDER_BAD),
            409,
            409,
            "Schema being registered is incompatible with an earlier schema for subject 'orders-value': new field \"qty\" has no default, so data written with the earlier schema cannot be read",
        ),
        (
            "POST",
            "/subjects/orders-value/versions",
            schema("{not json"),
            422,
            42201,
            "Invalid schema: not valid Avro JSON (key must be a string at line 1 column 2).",
        ),
        (
            "POST",
            "/subjects/orders-value/versions",
            Some(json!({"schema": "{}", "schemaType": "JSON"})),
            422,
            42201,
            "Invalid schema: schema type 'JSON' is not supported; use AVRO or PROTOBUF.",
        ),
        (
            "GET",
            "/subjects/orders-value/versions/first",
            None,
            422,
            42202,
            "Invalid version 'first': a version is a positive integer or 'latest'.",
        ),
        (
            "PUT",
            "/config",
            Some(json!({"compatibility": "SIDEWAYS"})),
            422,
            42203,
            "Invalid compatibility level 'SIDEWAYS'; expected one of NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE.",
        ),
        (
            "PUT",
            "/mode",
            Some(json!({"mode": "OFF"})),
            422,
            42204,
            "Invalid mode 'OFF'; expected READWRITE, READONLY or IMPORT.",
        ),
    ];
    for (method, path, body, status, code, message) in cases {
        let (got_status, content_type, got) = call(&local, method, path, body).await;
        assert_eq!(
            (got_status, got),
            (status, json!({"error_code": code, "message": message})),
            "{method} {path}"
        );
        assert_eq!(content_type, CONFLUENT, "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_role_the_api_to_enable_or_the_outage() {
    let (google, local) = start(|b| b.with_quota_project("billing-project")).await;
    google.set_schema_registry_fault(Some(ManagedKafkaFault::PermissionDenied));
    let denied = format!(
        "Permission 'managedkafka.schemaRegistries.get' denied on resource '//managedkafka.googleapis.com/{REGISTRY}' (or it may not exist)."
    );
    assert_eq!(
        call(&local, "GET", "/subjects", None).await.2,
        json!({"error_code": 40301, "message": format!("{denied} (gcp-kafka-auth-handler: {PRINCIPAL} needs roles/managedkafka.schemaRegistryViewer to read schema registry {REGISTRY}: gcloud projects add-iam-policy-binding test-project --member=<that principal> --role=roles/managedkafka.schemaRegistryViewer)")})
    );
    let (status, _, body) = call(
        &local,
        "POST",
        "/subjects/s/versions",
        Some(json!({"schema": ORDER_V1})),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"error_code": 40301, "message": format!("{denied} (gcp-kafka-auth-handler: {PRINCIPAL} needs roles/managedkafka.schemaRegistryEditor to change schema registry {REGISTRY}: gcloud projects add-iam-policy-binding test-project --member=<that principal> --role=roles/managedkafka.schemaRegistryEditor)")})
    );
    google.set_schema_registry_fault(Some(ManagedKafkaFault::ServiceDisabled));
    let number = fake_google::numeric_id("billing-project");
    assert_eq!(
        call(&local, "GET", "/subjects", None).await,
        (
            403,
            CONFLUENT.to_owned(),
            json!({"error_code": 40301, "message": format!("Managed Service for Apache Kafka API has not been used in project {number} before or it is disabled. (gcp-kafka-auth-handler: enable the API with `gcloud services enable managedkafka.googleapis.com --project={number}`, then retry)")})
        )
    );
    google.set_schema_registry_fault(Some(ManagedKafkaFault::Status(503)));
    assert_eq!(
        call(&local, "GET", "/subjects", None).await.2,
        json!({"error_code": 50003, "message": "The service is currently unavailable."})
    );
    google.set_schema_registry_fault(None);
    assert_eq!(call(&local, "GET", "/subjects", None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_startup_check_names_the_fix() {
    let google = FakeGoogle::start().await;
    let local = serve(&google, |b| b.with_quota_project("billing-project")).await;
    let url = format!("{}{PREFIX}", google.base_url());
    assert_eq!(
        local.endpoint.check().await.unwrap_err().to_string(),
        format!(
            "Managed Kafka schema registry {REGISTRY} not found (404 from {url}): check the project, the region and the registry id; `gcloud beta managed-kafka schema-registries list --project=test-project --location=us-central1` lists the registries there"
        )
    );
    google.add_schema_registry(REGISTRY);
    local.endpoint.check().await.unwrap();
    google.set_schema_registry_fault(Some(ManagedKafkaFault::PermissionDenied));
    assert_eq!(
        local.endpoint.check().await.unwrap_err().to_string(),
        format!(
            "permission denied reading Managed Kafka schema registry {REGISTRY} (403 from {url}): {PRINCIPAL} needs roles/managedkafka.schemaRegistryViewer on it to read schemas (roles/managedkafka.schemaRegistryEditor to register them): gcloud projects add-iam-policy-binding test-project --member=<that principal> --role=roles/managedkafka.schemaRegistryViewer; Google said: Permission 'managedkafka.schemaRegistries.get' denied on resource '//managedkafka.googleapis.com/{REGISTRY}' (or it may not exist)."
        )
    );
    google.set_schema_registry_fault(Some(ManagedKafkaFault::ServiceDisabled));
    let number = fake_google::numeric_id("billing-project");
    assert_eq!(
        local.endpoint.check().await.unwrap_err().to_string(),
        format!(
            "the Managed Kafka API (managedkafka.googleapis.com) is disabled in project {number}: enable it with `gcloud services enable managedkafka.googleapis.com --project={number}` (the consumer project is the quota project when Builder::with_quota_project sets one), then retry"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refreshed_across_expiry_is_used_at_once() {
    let google = FakeGoogle::start().await;
    google.add_schema_registry(REGISTRY);
    // The first token lives 21 s, so the provider refreshes it at half life (10.5 s).
    google.fail_next(1, Fault::ExpiresIn(21));
    let local = serve(&google, |b| b).await;
    assert_eq!(call(&local, "GET", "/subjects", None).await.0, 200);
    let first = local.provider.token().await.unwrap();
    let started = Instant::now();
    let second = loop {
        let now = local.provider.token().await.unwrap();
        if now.expose() != first.expose() {
            break now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no refresh in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(call(&local, "GET", "/subjects", None).await.0, 200);
    let bearer = |call: &fake_google::RecordedRequest| {
        call.header("authorization")
            .unwrap()
            .trim_start_matches("Bearer ")
            .to_owned()
    };
    let calls = registry_calls(&google);
    assert_eq!(calls.len(), 2);
    use secrecy::ExposeSecret as _;
    assert_eq!(bearer(&calls[0]), first.access_token().expose_secret());
    assert_eq!(bearer(&calls[1]), second.access_token().expose_secret());
    assert_ne!(bearer(&calls[0]), bearer(&calls[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_authorization_header_is_dropped_and_the_client_told_it_is_not_needed() {
    let (google, local) = start(|b| b).await;
    let response = reqwest::Client::new()
        .get(local.url("/subjects"))
        .header("Authorization", "Basic dXNlcjpzZWNyZXQ=")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-gcp-kafka-auth-handler-note"],
        "the Authorization header is not needed and was not forwarded: this endpoint authenticates to Google itself; remove the client's basic.auth/bearer.auth settings"
    );
    let calls = registry_calls(&google);
    let authorizations: Vec<&str> = calls[0]
        .headers
        .iter()
        .filter(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(authorizations.len(), 1);
    assert!(
        authorizations[0].starts_with("Bearer ya29."),
        "{authorizations:?}"
    );
    // Without one, no note.
    let plain = reqwest::get(local.url("/subjects")).await.unwrap();
    assert!(
        plain
            .headers()
            .get("x-gcp-kafka-auth-handler-note")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_over_the_cap_get_413_and_never_reach_google() {
    let (google, local) = start(|b| b.with_max_request_bytes(1024)).await;
    let expected = json!({"error_code": 413, "message": "the request body is larger than 1024 bytes, the endpoint's limit"});
    // Declared too large: refused before the body is read.
    let big = format!(r#"{{"schema":"{}"}}"#, "x".repeat(2000));
    let response = raw_request(
        local.addr,
        format!(
            "POST /subjects/s/versions HTTP/1.1\r\nHost: localhost\r\nContent-Type: {CONFLUENT}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}",
            big.len()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(response.status, 413);
    assert_eq!(response.json(), expected);
    // Chunked, so only counting finds it.
    let chunked = format!(
        "POST /subjects/s/versions HTTP/1.1\r\nHost: localhost\r\nContent-Type: {CONFLUENT}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    let response = raw_request(local.addr, chunked.as_bytes()).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.header("content-type"), Some(CONFLUENT));
    assert!(registry_calls(&google).is_empty());
    // Chunked within the cap: streamed on to Google whole.
    let small = json!({ "schema": ORDER_V2 }).to_string();
    let chunked = format!(
        "POST /subjects/t/versions HTTP/1.1\r\nHost: localhost\r\nContent-Type: {CONFLUENT}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        10,
        &small[..10],
        small.len() - 10,
        &small[10..]
    );
    let response = raw_request(local.addr, chunked.as_bytes()).await;
    assert_eq!((response.status, response.json()), (200, json!({"id": 1})));
    assert_eq!(registry_calls(&google)[0].body, small);
    // Declared within the cap: forwarded.
    let fits = json!({ "schema": ORDER_V1 });
    assert_eq!(
        call(&local, "POST", "/subjects/s/versions", Some(fits))
            .await
            .2,
        json!({"id": 2})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_too_large_to_cache_are_streamed_whole_and_fetched_again() {
    // A quarter of 400 bytes is the largest answer kept.
    let (google, local) = start(|b| b.with_cache_limits(10, 400)).await;
    let fields: Vec<Value> = (0..20)
        .map(|i| json!({"name": format!("field_{i}"), "type": "string", "default": ""}))
        .collect();
    let big = json!({"type": "record", "name": "Wide", "fields": fields}).to_string();
    let registered = call(
        &local,
        "POST",
        "/subjects/wide-value/versions",
        Some(json!({ "schema": big })),
    )
    .await;
    assert_eq!(registered.2, json!({"id": 1}));
    let before = google.schema_registry_calls();
    for _ in 0..2 {
        assert_eq!(
            call(&local, "GET", "/schemas/ids/1", None).await,
            (
                200,
                "application/json; charset=utf-8".to_owned(),
                json!({ "schema": big })
            )
        );
    }
    assert_eq!(google.schema_registry_calls(), before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_hosts_and_browsers_are_refused_before_google_is_called() {
    let (google, local) = start(|b| b).await;
    let response = raw_request(local.addr, &get_with_host("evil.example:8081", "")).await;
    assert_eq!(response.status, 403);
    assert_eq!(response.header("content-type"), Some(CONFLUENT));
    assert_eq!(
        response.json(),
        json!({"error_code": 403, "message": "Host `evil.example:8081` is not a loopback name or address; to answer it, add it with EndpointConfig::with_allowed_host"})
    );
    let response = raw_request(
        local.addr,
        &get_with_host("localhost:8081", "Origin: https://evil.example\r\n"),
    )
    .await;
    assert_eq!(response.status, 403);
    assert_eq!(
        response.json(),
        json!({"error_code": 403, "message": "requests carrying `origin` come from a web browser; the schema registry endpoint answers registry clients only"})
    );
    let response = raw_request(
        local.addr,
        &get_with_host("localhost:8081", "Sec-Fetch-Mode: no-cors\r\n"),
    )
    .await;
    assert_eq!(response.status, 403);
    assert!(registry_calls(&google).is_empty());
    // A loopback Host in any spelling is answered.
    let response = raw_request(
        local.addr,
        b"GET /subjects HTTP/1.1\r\nHost: [::1]:8081\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((response.status, response.body.as_str()), (200, "[]"));
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(registry_calls(&google).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_by_id_are_answered_from_the_cache_after_the_first_lookup() {
    let (google, local) = start(|b| b).await;
    let registered = call(
        &local,
        "POST",
        "/subjects/orders-value/versions",
        Some(json!({"schema": ORDER_V1})),
    )
    .await;
    assert_eq!(registered.2, json!({"id": 1}));
    let before = google.schema_registry_calls();
    for _ in 0..3 {
        let (status, content_type, body) = call(&local, "GET", "/schemas/ids/1", None).await;
        assert_eq!((status, body), (200, json!({"schema": ORDER_V1})));
        assert_eq!(content_type, "application/json; charset=utf-8");
    }
    assert_eq!(google.schema_registry_calls(), before + 1);
    // Another query is another answer (a format, a subject): its own entry.
    call(&local, "GET", "/schemas/ids/1?subject=orders-value", None).await;
    call(&local, "GET", "/schemas/ids/1?subject=orders-value", None).await;
    assert_eq!(google.schema_registry_calls(), before + 2);
    // Misses are not cached: an id registered later is found.
    assert_eq!(call(&local, "GET", "/schemas/ids/2", None).await.0, 404);
    call(
        &local,
        "POST",
        "/subjects/other-value/versions",
        Some(json!({"schema": ORDER_V2})),
    )
    .await;
    assert_eq!(call(&local, "GET", "/schemas/ids/2", None).await.0, 200);

    let metrics = reqwest::get(local.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "gcp_kafka_auth_schema_registry_schema_cache_lookups_total{result=\"hit\"} 3",
        "gcp_kafka_auth_schema_registry_schema_cache_lookups_total{result=\"miss\"} 4",
        "gcp_kafka_auth_schema_registry_requests_total{route=\"schema_id\",status=\"200\"} 6",
        "gcp_kafka_auth_schema_registry_requests_total{route=\"schema_id\",status=\"404\"} 1",
        "gcp_kafka_auth_schema_registry_requests_total{route=\"versions\",status=\"200\"} 2",
        "gcp_kafka_auth_schema_registry_upstream_duration_seconds_count{route=\"schema_id\"} 4",
        "gcp_kafka_auth_token_ready 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    assert!(metrics.ends_with("# EOF\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_registry_command_serves_localhost_8081_style_and_names_a_missing_registry() {
    let google = FakeGoogle::start().await;
    google.add_schema_registry(REGISTRY);
    let env = SidecarEnv::new(&google);
    let base = google.base_url();
    let sidecar = Sidecar::spawn(
        env,
        &[
            "schema-registry",
            REGISTRY,
            "--listen",
            "127.0.0.1:0",
            "--schema-registry-endpoint",
            &base,
            "--log-format",
            "json",
        ],
    );
    let port = sidecar.addr.port();
    // The binary's refusal names its flag, where the library's names EndpointConfig.
    let refused = raw_request(sidecar.addr, &get_with_host("evil.example:8081", "")).await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.json(),
        json!({"error_code": 403, "message": "Host `evil.example:8081` is not a loopback name or address; to answer it, start the sidecar with --allowed-host (GCP_KAFKA_AUTH_ALLOWED_HOSTS)"})
    );
    for host in ["127.0.0.1", "[::1]"] {
        let answer = reqwest::get(format!("http://{host}:{port}/subjects"))
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{host}");
        assert_eq!(answer.text().await.unwrap(), "[]");
    }
    let listening = sidecar
        .json_logs()
        .into_iter()
        .find(|l| l["fields"]["registry"] == REGISTRY || l["registry"] == REGISTRY)
        .expect("a listening line naming the registry");
    assert_eq!(
        listening["fields"]["upstream"]
            .as_str()
            .or(listening["upstream"].as_str()),
        Some(format!("{base}{PREFIX}").as_str()),
        "{listening}"
    );

    let missing = "projects/test-project/locations/us-central1/schemaRegistries/missing";
    let (code, _, stderr) = run(
        &SidecarEnv::new(&google),
        &[
            "schema-registry",
            missing,
            "--listen",
            "127.0.0.1:0",
            "--schema-registry-endpoint",
            &base,
        ],
    );
    // Every failing command exits 2, with the error on stderr.
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: Managed Kafka schema registry {missing} not found (404 from {base}/v1/{missing})"
        )),
        "{stderr}"
    );
    let (code, _, stderr) = run(
        &SidecarEnv::new(&google),
        &[
            "schema-registry",
            "projects/p/locations/l/schemaRegistries/bad-name",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("the registry id must be 1 to 63 letters, digits or underscores"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_schema_registry_serves_tokens_and_the_registry_from_one_cache() {
    let google = FakeGoogle::start().await;
    google.add_schema_registry(REGISTRY);
    let base = google.base_url();
    let sidecar = Sidecar::start(
        SidecarEnv::new(&google),
        &[
            "--schema-registry",
            REGISTRY,
            "--schema-registry-listen",
            "127.0.0.1:0",
            "--schema-registry-endpoint",
            &base,
        ],
    );
    let registry_addr = registry_address(&sidecar);
    let token = reqwest::Client::new()
        .post(sidecar.url("/"))
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    let subjects = reqwest::get(format!("http://{registry_addr}/subjects"))
        .await
        .unwrap();
    assert_eq!(subjects.status(), 200);
    // One token fetch served both (the metadata server mints a new token per request).
    assert_eq!(google.stats().metadata_token, 1);
}

/// The registry's listening address from a JSON log (fields flattened or under `fields`).
fn registry_address(sidecar: &Sidecar) -> String {
    let started = Instant::now();
    loop {
        let found = sidecar.json_logs().into_iter().find_map(|l| {
            let fields = if l["fields"].is_object() {
                &l["fields"]
            } else {
                &l
            };
            (fields["registry"] == REGISTRY).then(|| fields["address"].as_str().unwrap().to_owned())
        });
        if let Some(found) = found {
            return found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            sidecar.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_with_schema_registry_serves_it_with_the_quota_project() {
    let google = FakeGoogle::start().await;
    google.add_schema_registry(REGISTRY);
    let base = google.base_url();
    // No broker answers there: the proxy is not ready, but the registry endpoint serves.
    let sidecar = Sidecar::spawn(
        SidecarEnv::new(&google),
        &[
            "proxy",
            "--bootstrap-server",
            "127.0.0.1:9",
            "--listen",
            "127.0.0.1:0",
            "--http-port",
            "0",
            "--quota-project",
            "billing-project",
            "--schema-registry",
            REGISTRY,
            "--schema-registry-listen",
            "127.0.0.1:0",
            "--schema-registry-endpoint",
            &base,
            "--log-format",
            "json",
        ],
    );
    let addr = registry_address(&sidecar);
    let answer = reqwest::get(format!("http://{addr}/subjects"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let calls = registry_calls(&google);
    assert_eq!(calls.last().unwrap().path, format!("{PREFIX}/subjects"));
    assert!(
        calls
            .iter()
            .all(|c| c.header("x-goog-user-project") == Some("billing-project"))
    );
    // The startup check read the registry resource first.
    assert_eq!(google.schema_registry_calls(), 2);
}

#[test]
fn client_config_for_the_schema_registry_sets_only_the_url() {
    let google_env = SidecarEnv {
        vars: vec![],
        home: tempfile::tempdir().unwrap(),
    };
    let (code, stdout, stderr) = run(
        &google_env,
        &["client-config", "--client", "schema-registry"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        gcp_kafka_auth_handler::registry::client_config("http://localhost:8081")
    );
    for line in [
        "#   client = SchemaRegistryClient({\"url\": \"http://localhost:8081\"})",
        "#   client, err := schemaregistry.NewClient(schemaregistry.NewConfig(\"http://localhost:8081\"))",
        "#   const registry = new SchemaRegistry({ host: 'http://localhost:8081' })",
        "schema.registry.url=http://localhost:8081",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line} in\n{stdout}");
    }
    let (code, stdout, _) = run(
        &google_env,
        &[
            "client-config",
            "--client",
            "schema-registry",
            "--url",
            "http://127.0.0.1:18081",
        ],
    );
    assert_eq!(code, 0);
    assert!(stdout.contains("schema.registry.url=http://127.0.0.1:18081\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_is_503_and_an_unreachable_registry_502_in_confluent_shape() {
    let google = FakeGoogle::start().await;
    google.add_schema_registry(REGISTRY);
    google.set_fault(Some(Fault::Status(503)));
    let local = serve(&google, |b| b).await;
    let (status, content_type, body) = call(&local, "GET", "/subjects", None).await;
    assert_eq!((status, content_type.as_str()), (503, CONFLUENT));
    assert_eq!(body["error_code"], 50003);
    let message = body["message"].as_str().unwrap();
    assert!(
        message
            .starts_with("no Google access token is available to call the schema registry with: "),
        "{message}"
    );
    assert!(registry_calls(&google).is_empty());
    google.set_fault(None);

    // Nothing listens on the port of a listener just closed.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let unreachable = serve(&google, |b| b.with_endpoint(format!("http://{closed}"))).await;
    let (status, _, body) = call(&unreachable, "GET", "/subjects?deleted=true", None).await;
    assert_eq!(status, 502);
    assert_eq!(body["error_code"], 50003);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "cannot reach the schema registry at http://{closed}{PREFIX}/subjects: "
        )) && message.ends_with("(set a private endpoint with Builder::with_endpoint)"),
        "{message}"
    );
    // A program words it in its own terms (the binary names --schema-registry-endpoint).
    let worded = serve(&google, |b| {
        b.with_endpoint(format!("http://{closed}"))
            .with_error_wording(|err| match err {
                RegistryError::Unreachable { url, .. } => format!("{url} is down: use --flag"),
                other => other.to_string(),
            })
    })
    .await;
    let (status, _, body) = call(&worded, "GET", "/subjects", None).await;
    assert_eq!(status, 502);
    assert_eq!(
        body["message"],
        format!("http://{closed}{PREFIX}/subjects is down: use --flag")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_cannot_reach_apis_outside_the_registry() {
    let (google, local) = start(|b| b).await;
    google.add_managed_kafka_cluster(
        "projects/test-project/locations/us-central1/clusters/orders",
        "bootstrap.invalid:9092",
    );
    for path in [
        "/../../clusters/orders",
        "/subjects/%2e%2e/%2E%2E/%2e%2e/clusters/orders",
        "/subjects/..%5c..%5c..%5cclusters%5corders",
        "/./subjects",
    ] {
        let response = raw_request(
            local.addr,
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(response.status, 400, "{path}");
        assert_eq!(
            response.json(),
            json!({"error_code": 400, "message": "the path has `.` or `..` segments; the endpoint forwards paths under the schema registry only"}),
            "{path}"
        );
    }
    assert_eq!(google.managed_kafka_gets(), 0);
    assert!(
        google
            .requests()
            .iter()
            .all(|r| !r.path.starts_with("/v1/")),
        "{:?}",
        google.requests()
    );
    // A subject whose name merely contains dots is a subject.
    assert_eq!(
        call(&local, "GET", "/subjects/a..b/versions", None).await.2,
        json!({"error_code": 40401, "message": "Subject 'a..b' not found."})
    );
}
