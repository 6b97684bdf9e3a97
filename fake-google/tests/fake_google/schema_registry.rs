//! The schema registry: a bearer token the fake issued is required, errors are Google-shaped
//! (never Confluent's), state is kept per registry and context, and the control plane adds
//! registries and faults.

use fake_google::FakeGoogle;
use serde_json::{Value, json};

use crate::common::{client, metadata_get, unpack};

const NAME: &str = "projects/test-project/locations/us-central1/schemaRegistries/reg";

async fn token(google: &FakeGoogle) -> String {
    let response = metadata_get(google, "/instance/service-accounts/default/token").await;
    let (_, _, body) = unpack(response).await;
    body["access_token"].as_str().unwrap().to_owned()
}

async fn call(
    google: &FakeGoogle,
    bearer: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client().request(
        method.parse().unwrap(),
        format!("{}/v1/{NAME}{path}", google.base_url()),
    );
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let (status, _, body) = unpack(request.send().await.unwrap()).await;
    (status, body)
}

#[tokio::test]
async fn a_bearer_token_the_fake_issued_is_required() {
    let google = FakeGoogle::start().await;
    google.add_schema_registry(NAME);
    let unauthenticated = json!({"error": {
        "code": 401,
        "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        "status": "UNAUTHENTICATED",
    }});
    assert_eq!(
        call(&google, None, "GET", "/subjects", None).await,
        (401, unauthenticated.clone())
    );
    assert_eq!(
        call(&google, Some("ya29.not-issued"), "GET", "/subjects", None).await,
        (401, unauthenticated)
    );
    let token = token(&google).await;
    assert_eq!(
        call(&google, Some(&token), "GET", "/subjects", None).await,
        (200, json!([]))
    );
    assert_eq!(
        call(&google, Some(&token), "GET", "", None).await,
        (
            200,
            json!({"name": NAME, "contexts": [format!("{NAME}/contexts/.")]})
        )
    );
    assert_eq!(google.schema_registry_calls(), 4);
}

#[tokio::test]
async fn errors_are_google_shaped_and_state_is_kept_per_context() {
    let google = FakeGoogle::start().await;
    google.add_schema_registry(NAME);
    let token = token(&google).await;
    let schema = json!({"schema": r#"{"type":"string"}"#});
    assert_eq!(
        call(
            &google,
            Some(&token),
            "POST",
            "/contexts/.a/subjects/s/versions",
            Some(schema.clone())
        )
        .await,
        (200, json!({"id": 1}))
    );
    assert_eq!(
        call(&google, Some(&token), "GET", "/subjects/s/versions", None).await,
        (
            404,
            json!({"error": {"code": 404, "message": "Subject 's' not found.", "status": "NOT_FOUND"}})
        )
    );
    assert_eq!(
        call(
            &google,
            Some(&token),
            "GET",
            "/contexts/.a/subjects/s/versions",
            None
        )
        .await,
        (200, json!([1]))
    );
    // Protobuf as text, and as the Base64 FileDescriptorProto confluent-kafka-python sends.
    for (subject, schema, id) in [
        ("p1", "syntax = \"proto3\"; message M { int64 id = 1; }", 2),
        (
            "p2",
            "ChNpbnRlcm9wX29yZGVyLnByb3RvEgdpbnRlcm9wYgZwcm90bzM=",
            3,
        ),
    ] {
        assert_eq!(
            call(
                &google,
                Some(&token),
                "POST",
                &format!("/subjects/{subject}/versions"),
                Some(json!({"schema": schema, "schemaType": "PROTOBUF"}))
            )
            .await,
            (200, json!({"id": id}))
        );
    }
    assert_eq!(
        call(
            &google,
            Some(&token),
            "POST",
            "/subjects/p3/versions",
            Some(json!({"schema": "{}", "schemaType": "PROTOBUF"}))
        )
        .await,
        (
            400,
            json!({"error": {"code": 400, "message": "Invalid schema: not a Protobuf schema (no syntax or message statement, not a Base64 FileDescriptorProto).", "status": "INVALID_ARGUMENT"}})
        )
    );
    let other = "projects/test-project/locations/us-central1/schemaRegistries/other";
    let response = client()
        .get(format!("{}/v1/{other}/subjects", google.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, _, body) = unpack(response).await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({"error": {"code": 404, "message": format!("Resource '{other}' was not found"), "status": "NOT_FOUND"}})
        )
    );
}

#[tokio::test]
async fn the_control_plane_adds_registries_and_sets_faults() {
    let google = FakeGoogle::start().await;
    let post = |path: &'static str, body: Value| {
        let url = format!("{}/_fake/schema-registry/{path}", google.base_url());
        async move {
            let response = client()
                .post(url)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            unpack(response).await.0
        }
    };
    assert_eq!(post("registry", json!({"name": NAME})).await, 200);
    assert_eq!(post("fault", json!({"fault": "status:503"})).await, 200);
    let token = token(&google).await;
    assert_eq!(
        call(&google, Some(&token), "GET", "/subjects", None).await,
        (
            503,
            json!({"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}})
        )
    );
    assert_eq!(post("fault", json!({"fault": "sideways"})).await, 400);
    assert_eq!(post("fault", json!({"fault": "none"})).await, 200);
    assert_eq!(
        call(&google, Some(&token), "GET", "/subjects", None).await,
        (200, json!([]))
    );
}
