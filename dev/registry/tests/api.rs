//! HTTP-level tests: every endpoint, driven through `tower::ServiceExt::oneshot`
//! on the real router over a store in a temporary directory.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use flashsale_dev_registry::{app, AppState, CONTENT_TYPE_V1};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tempfile::TempDir;
use tower::ServiceExt;

/// A router over a fresh data dir; the dir lives as long as the harness.
struct Harness {
    /// The application under test.
    app: Router,
    /// Keeps the data dir alive (and lets tests reopen it).
    dir: TempDir,
}

/// A response, decoded.
struct Answer {
    /// HTTP status.
    status: StatusCode,
    /// The Content-Type header.
    content_type: String,
    /// The body as text.
    text: String,
}

impl Answer {
    /// The body as JSON (panics in tests only).
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }

    /// Asserts a Confluent error with `status` and `code`.
    fn assert_error(&self, status: StatusCode, code: u64) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.json()["error_code"], code, "{}", self.text);
        assert!(self.json()["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert_eq!(self.content_type, CONTENT_TYPE_V1);
    }
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let app = app(AppState::open(dir.path()).unwrap());
        Self { app, dir }
    }

    /// Sends a request with an optional body and content type.
    async fn send(
        &self,
        method: Method,
        uri: &str,
        body: Option<String>,
        content_type: Option<&str>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let req = req.body(body.map_or_else(Body::empty, Body::from)).unwrap();
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let content_type = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            content_type,
            text: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    async fn get(&self, uri: &str) -> Answer {
        self.send(Method::GET, uri, None, None).await
    }

    async fn delete(&self, uri: &str) -> Answer {
        self.send(Method::DELETE, uri, None, None).await
    }

    /// Sends JSON the way confluent-kafka does (Confluent content type).
    async fn post(&self, uri: &str, body: Value) -> Answer {
        self.send(
            Method::POST,
            uri,
            Some(body.to_string()),
            Some(CONTENT_TYPE_V1),
        )
        .await
    }

    async fn put(&self, uri: &str, body: Value) -> Answer {
        self.send(
            Method::PUT,
            uri,
            Some(body.to_string()),
            Some(CONTENT_TYPE_V1),
        )
        .await
    }

    /// Registers `schema` under `subject`.
    async fn register(&self, subject: &str, schema: &str) -> Answer {
        self.post(
            &format!("/subjects/{subject}/versions"),
            json!({"schema": schema}),
        )
        .await
    }
}

const CONFIGURE_SALE: &str = r#"{"type":"record","name":"ConfigureSale","namespace":"flashsale.v1","fields":[{"name":"sale_id","type":"string"},{"name":"stock","type":"long"}]}"#;

/// The request topic's value schema, a top-level union of two records;
/// `user_type` is PurchaseRequest.user_id's type, `extra` extends its fields.
fn request_union(user_type: &str, extra: &str) -> String {
    format!(
        r#"[{{"type":"record","name":"PurchaseRequest","namespace":"flashsale.v1","fields":[{{"name":"request_id","type":"string"}},{{"name":"user_id","type":"{user_type}"}},{{"name":"quantity","type":"int"}}{extra}]}},{CONFIGURE_SALE}]"#
    )
}

const OPTIONAL_CHANNEL: &str = r#",{"name":"channel","type":["null","string"],"default":null}"#;

// Proves the fixed endpoints answer as clients expect (`{}`, health, the
// supported types) in the Confluent content type, by calling each once.
#[tokio::test]
async fn root_health_and_types() {
    let h = Harness::new();
    let root = h.get("/").await;
    assert_eq!((root.status, root.json()), (StatusCode::OK, json!({})));
    assert_eq!(root.content_type, CONTENT_TYPE_V1);
    let health = h.get("/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert!(health.text.contains("not for production"));
    assert_eq!(h.get("/schemas/types").await.json(), json!(["AVRO"]));
}

// Proves the union evolution our request topic needs: v2 adding an optional
// field to PurchaseRequest registers as version 2 with a new id; v3 changing a
// field's type or adding a required field is refused with 409, and the
// subject still has two versions afterwards.
#[tokio::test]
async fn union_evolution_is_checked_backward() {
    let h = Harness::new();
    let v1 = h
        .register("requests-value", &request_union("string", ""))
        .await;
    assert_eq!(v1.status, StatusCode::OK, "{}", v1.text);
    assert_eq!(
        (v1.json()["id"].clone(), v1.json()["version"].clone()),
        (json!(1), json!(1))
    );
    let v2 = h
        .register("requests-value", &request_union("string", OPTIONAL_CHANNEL))
        .await;
    assert_eq!(v2.status, StatusCode::OK, "{}", v2.text);
    assert_eq!(
        (v2.json()["id"].clone(), v2.json()["version"].clone()),
        (json!(2), json!(2))
    );
    for breaking in [
        request_union("int", OPTIONAL_CHANNEL),
        request_union(
            "string",
            &format!(r#"{OPTIONAL_CHANNEL},{{"name":"store","type":"string"}}"#),
        ),
    ] {
        let v3 = h.register("requests-value", &breaking).await;
        v3.assert_error(StatusCode::CONFLICT, 409);
        let message = v3.json()["message"].as_str().unwrap().to_owned();
        assert!(message.starts_with("Schema being registered is incompatible with an earlier schema for subject \"requests-value\""), "{message}");
        assert!(
            message.contains("flashsale.v1.PurchaseRequest."),
            "{message}"
        );
    }
    assert_eq!(
        h.get("/subjects/requests-value/versions").await.json(),
        json!([1, 2])
    );
}

// Proves registering an already-registered schema (spelled differently)
// returns the existing id and version without creating a new version.
#[tokio::test]
async fn reregistering_returns_existing_version() {
    let h = Harness::new();
    h.register(
        "s",
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#,
    )
    .await;
    let again = h
        .register(
            "s",
            r#"{ "name": "R", "type": "record", "fields": [ {"type": "int", "name": "a"} ] }"#,
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        (again.json()["id"].clone(), again.json()["version"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(h.get("/subjects/s/versions").await.json(), json!([1]));
}

// Proves ids are global and shared: the same schema under two subjects has
// one id, listed by /schemas/ids/{id}/versions and /subjects; a different
// schema gets the next id.
#[tokio::test]
async fn ids_are_shared_across_subjects() {
    let h = Harness::new();
    let a = h.register("a-value", r#""string""#).await.json();
    let b = h.register("b-value", r#" "string" "#).await.json();
    assert_eq!(a["id"], b["id"]);
    assert_eq!(b["version"], 1);
    let c = h.register("c-value", r#""long""#).await.json();
    assert_eq!(c["id"], 2);
    assert_eq!(
        h.get("/schemas/ids/1/versions").await.json(),
        json!([{"subject": "a-value", "version": 1}, {"subject": "b-value", "version": 1}])
    );
    assert_eq!(
        h.get("/schemas/ids/1/subjects").await.json(),
        json!(["a-value", "b-value"])
    );
    assert_eq!(
        h.get("/subjects").await.json(),
        json!(["a-value", "b-value", "c-value"])
    );
}

// Proves every read endpoint for a registered schema: by id (wrapped and raw),
// by subject version number, `latest` and `-1`, and the raw version schema.
#[tokio::test]
async fn reads_by_id_and_version() {
    let h = Harness::new();
    let schema = request_union("string", "");
    h.register("r-value", &schema).await;
    assert_eq!(
        h.get("/schemas/ids/1").await.json(),
        json!({"schema": schema})
    );
    let raw = h.get("/schemas/ids/1/schema").await;
    assert_eq!(
        (raw.text.as_str(), raw.content_type.as_str()),
        (schema.as_str(), CONTENT_TYPE_V1)
    );
    let expected = json!({"subject": "r-value", "version": 1, "id": 1, "schema": schema});
    for v in ["1", "latest", "-1"] {
        assert_eq!(
            h.get(&format!("/subjects/r-value/versions/{v}"))
                .await
                .json(),
            expected
        );
    }
    assert_eq!(
        h.get("/subjects/r-value/versions/latest/schema").await.text,
        schema
    );
}

// Proves the not-found and invalid-argument error codes of the read endpoints.
#[tokio::test]
async fn read_errors() {
    let h = Harness::new();
    h.register("s", r#""int""#).await;
    h.get("/schemas/ids/99")
        .await
        .assert_error(StatusCode::NOT_FOUND, 40403);
    h.get("/schemas/ids/abc")
        .await
        .assert_error(StatusCode::NOT_FOUND, 40403);
    h.get("/schemas/ids/99/versions")
        .await
        .assert_error(StatusCode::NOT_FOUND, 40403);
    h.get("/subjects/nope/versions")
        .await
        .assert_error(StatusCode::NOT_FOUND, 40401);
    h.get("/subjects/nope/versions/latest")
        .await
        .assert_error(StatusCode::NOT_FOUND, 40401);
    h.get("/subjects/s/versions/9")
        .await
        .assert_error(StatusCode::NOT_FOUND, 40402);
    for bad in ["0", "-2", "abc", "99999999999"] {
        h.get(&format!("/subjects/s/versions/{bad}"))
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, 42202);
    }
    h.get("/no/such/endpoint")
        .await
        .assert_error(StatusCode::NOT_FOUND, 404);
    h.send(Method::PATCH, "/subjects", None, None)
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, 405);
}

// Proves bad submissions are refused with the right codes: invalid Avro,
// other schema types and references (42201), an oversized schema (42201),
// and a body that is not JSON (400).
#[tokio::test]
async fn register_refusals() {
    let h = Harness::new();
    let invalid = h
        .register(
            "s",
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"nope"}]}"#,
        )
        .await;
    invalid.assert_error(StatusCode::UNPROCESSABLE_ENTITY, 42201);
    h.post(
        "/subjects/s/versions",
        json!({"schema": "{}", "schemaType": "PROTOBUF"}),
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, 42201);
    h.post(
        "/subjects/s/versions",
        json!({"schema": "\"int\"", "references": [{"name": "x", "subject": "y", "version": 1}]}),
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, 42201);
    let huge = format!(
        r#"{{"type":"record","name":"R","doc":"{}","fields":[]}}"#,
        "x".repeat(1024 * 1024)
    );
    let too_big = h.register("s", &huge).await;
    too_big.assert_error(StatusCode::UNPROCESSABLE_ENTITY, 42201);
    assert!(too_big.json()["message"]
        .as_str()
        .unwrap()
        .contains("1 MiB"));
    h.send(
        Method::POST,
        "/subjects/s/versions",
        Some("not json".into()),
        None,
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, 400);
    h.get("/subjects/s/versions")
        .await
        .assert_error(StatusCode::NOT_FOUND, 40401);
}

// Proves requests are accepted whatever their content type says (Confluent's,
// application/json, octet-stream, none) and that unknown query parameters
// are ignored, by registering under each variant.
#[tokio::test]
async fn lenient_content_type_and_query() {
    let h = Harness::new();
    let body = json!({"schema": "\"string\"", "schemaType": "AVRO", "references": []}).to_string();
    for (i, ct) in [
        Some(CONTENT_TYPE_V1),
        Some("application/json"),
        Some("application/octet-stream"),
        None,
    ]
    .into_iter()
    .enumerate()
    {
        let uri = format!("/subjects/s{i}/versions?normalize=true&fetchMaxId=false&subject=x&deleted=false&defaultToGlobal=true");
        let res = h.send(Method::POST, &uri, Some(body.clone()), ct).await;
        assert_eq!(res.status, StatusCode::OK, "{ct:?}: {}", res.text);
        assert_eq!(res.json()["id"], 1);
    }
    let got = h
        .get("/schemas/ids/1?subject=s0&format=resolved&deleted=True&%ZZ")
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
}

// Proves lookup (POST /subjects/{subject}) finds the version of a schema,
// and answers 40401 for an unknown subject and 40403 for an unknown schema;
// `deleted=true` also finds soft-deleted versions.
#[tokio::test]
async fn lookup_by_schema() {
    let h = Harness::new();
    h.register("s", r#""int""#).await;
    h.register("t", r#""long""#).await;
    let found = h
        .post(
            "/subjects/s?normalize=False&deleted=False",
            json!({"schema": "\"int\""}),
        )
        .await;
    assert_eq!(
        found.json(),
        json!({"subject": "s", "version": 1, "id": 1, "schema": "\"int\""})
    );
    h.post("/subjects/nope", json!({"schema": "\"int\""}))
        .await
        .assert_error(StatusCode::NOT_FOUND, 40401);
    h.post("/subjects/s", json!({"schema": "\"long\""}))
        .await
        .assert_error(StatusCode::NOT_FOUND, 40403);
    h.delete("/subjects/s").await;
    h.post("/subjects/s", json!({"schema": "\"int\""}))
        .await
        .assert_error(StatusCode::NOT_FOUND, 40401);
    assert_eq!(
        h.post("/subjects/s?deleted=true", json!({"schema": "\"int\""}))
            .await
            .json()["id"],
        1
    );
}

// Proves the config endpoints: global get/put/delete, subject get (40408
// unless defaultToGlobal), put, delete, both body spellings, and 42203.
#[tokio::test]
async fn config_endpoints() {
    let h = Harness::new();
    assert_eq!(
        h.get("/config").await.json(),
        json!({"compatibilityLevel": "BACKWARD"})
    );
    assert_eq!(
        h.put("/config", json!({"compatibility": "full"}))
            .await
            .json(),
        json!({"compatibility": "FULL"})
    );
    assert_eq!(
        h.get("/config").await.json(),
        json!({"compatibilityLevel": "FULL"})
    );
    h.get("/config/s")
        .await
        .assert_error(StatusCode::NOT_FOUND, 40408);
    assert_eq!(
        h.get("/config/s?defaultToGlobal=true").await.json(),
        json!({"compatibilityLevel": "FULL"})
    );
    let put = h
        .put("/config/s", json!({"compatibilityLevel": "NONE"}))
        .await;
    assert_eq!(put.json(), json!({"compatibility": "NONE"}));
    assert_eq!(
        h.get("/config/s").await.json(),
        json!({"compatibilityLevel": "NONE"})
    );
    assert_eq!(
        h.delete("/config/s").await.json(),
        json!({"compatibilityLevel": "NONE"})
    );
    h.delete("/config/s")
        .await
        .assert_error(StatusCode::NOT_FOUND, 40408);
    h.put("/config", json!({"compatibility": "SIDEWAYS"}))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, 42203);
    h.put("/config/s", json!({}))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, 42203);
    assert_eq!(
        h.delete("/config").await.json(),
        json!({"compatibilityLevel": "FULL"})
    );
    assert_eq!(
        h.get("/config").await.json(),
        json!({"compatibilityLevel": "BACKWARD"})
    );
}

// Proves registration honours the subject's level: NONE lets a breaking
// change in, FORWARD refuses a schema the old one cannot read, and
// BACKWARD_TRANSITIVE checks every version, not only the latest.
#[tokio::test]
async fn levels_apply_on_register() {
    let h = Harness::new();
    let rec = |fields: &str| format!(r#"{{"type":"record","name":"R","fields":[{fields}]}}"#);
    let a_int = rec(r#"{"name":"a","type":"int"}"#);
    let a_str = rec(r#"{"name":"a","type":"string"}"#);
    h.register("none", &a_int).await;
    h.put("/config/none", json!({"compatibility": "NONE"}))
        .await;
    assert_eq!(h.register("none", &a_str).await.status, StatusCode::OK);

    h.put("/config/fwd", json!({"compatibility": "FORWARD"}))
        .await;
    h.register("fwd", &a_int).await;
    // New drops `a`: backward-fine, but v1 (requires `a`) cannot read new data.
    h.register("fwd", &rec(""))
        .await
        .assert_error(StatusCode::CONFLICT, 409);

    // Same history in two subjects: v1 {a, b:int}, v2 {a}. The new schema
    // brings `b` back as a string with a default: it reads v2 data (default)
    // but not v1 data (int is not a string), so only the transitive level fails.
    h.put(
        "/config/trans",
        json!({"compatibility": "BACKWARD_TRANSITIVE"}),
    )
    .await;
    let new = rec(r#"{"name":"a","type":"int"},{"name":"b","type":"string","default":""}"#);
    for subject in ["plain", "trans"] {
        h.register(
            subject,
            &rec(r#"{"name":"a","type":"int"},{"name":"b","type":"int"}"#),
        )
        .await;
        assert_eq!(h.register(subject, &a_int).await.status, StatusCode::OK);
    }
    assert_eq!(h.register("plain", &new).await.status, StatusCode::OK);
    h.register("trans", &new)
        .await
        .assert_error(StatusCode::CONFLICT, 409);
}

// Proves the compatibility-test endpoints: against latest and a given
// version, verbose messages, the all-versions form, a subject without
// versions (compatible for latest, 40401 for a number) and 40402.
#[tokio::test]
async fn compatibility_endpoints() {
    let h = Harness::new();
    h.register("r", &request_union("string", "")).await;
    let good = json!({"schema": request_union("string", OPTIONAL_CHANNEL)});
    let bad = json!({"schema": request_union("int", "")});
    let uri = "/compatibility/subjects/r/versions/latest?normalize=False&verbose=False";
    assert_eq!(
        h.post(uri, good.clone()).await.json(),
        json!({"is_compatible": true})
    );
    assert_eq!(
        h.post(uri, bad.clone()).await.json(),
        json!({"is_compatible": false})
    );
    let verbose = h
        .post(
            "/compatibility/subjects/r/versions/1?verbose=True",
            bad.clone(),
        )
        .await
        .json();
    assert_eq!(verbose["is_compatible"], false);
    assert!(
        verbose["messages"][0]
            .as_str()
            .unwrap()
            .contains("PurchaseRequest.user_id"),
        "{verbose}"
    );
    assert_eq!(
        h.post("/compatibility/subjects/r/versions", bad.clone())
            .await
            .json()["is_compatible"],
        false
    );
    assert_eq!(
        h.post("/compatibility/subjects/r/versions", good.clone())
            .await
            .json()["is_compatible"],
        true
    );
    assert_eq!(
        h.post("/compatibility/subjects/new/versions/latest", bad.clone())
            .await
            .json()["is_compatible"],
        true
    );
    h.post("/compatibility/subjects/new/versions/1", bad.clone())
        .await
        .assert_error(StatusCode::NOT_FOUND, 40401);
    h.post("/compatibility/subjects/r/versions/7", bad)
        .await
        .assert_error(StatusCode::NOT_FOUND, 40402);
}

// Proves deletes: soft delete hides the subject but keeps ids resolvable and
// versions visible with deleted=true; a second soft delete is 40404;
// permanent delete needs a soft delete first (40405) and then removes it;
// single-version delete works the same way (40406 when already deleted).
#[tokio::test]
async fn deletes() {
    let h = Harness::new();
    h.register("s", r#""int""#).await;
    h.put("/config/s", json!({"compatibility": "NONE"})).await;
    h.register("s", r#""string""#).await;
    h.delete("/subjects/s?permanent=true")
        .await
        .assert_error(StatusCode::NOT_FOUND, 40405);
    assert_eq!(h.delete("/subjects/s/versions/2").await.json(), json!(2));
    h.delete("/subjects/s/versions/2")
        .await
        .assert_error(StatusCode::NOT_FOUND, 40406);
    h.delete("/subjects/s/versions/9")
        .await
        .assert_error(StatusCode::NOT_FOUND, 40402);
    assert_eq!(
        h.get("/subjects/s/versions?deleted=true").await.json(),
        json!([1, 2])
    );
    assert_eq!(h.delete("/subjects/s").await.json(), json!([1]));
    h.delete("/subjects/s")
        .await
        .assert_error(StatusCode::NOT_FOUND, 40404);
    assert_eq!(h.get("/subjects").await.json(), json!([]));
    assert_eq!(h.get("/subjects?deleted=true").await.json(), json!(["s"]));
    assert_eq!(
        h.get("/subjects/s/versions/1?deleted=true").await.json()["id"],
        1
    );
    assert_eq!(
        h.get("/schemas/ids/2").await.json(),
        json!({"schema": "\"string\""})
    );
    assert_eq!(
        h.delete("/subjects/s?permanent=true").await.json(),
        json!([1, 2])
    );
    h.delete("/subjects/s")
        .await
        .assert_error(StatusCode::NOT_FOUND, 40401);
    assert_eq!(h.get("/schemas/ids/1").await.status, StatusCode::OK);
}

// Proves subjects containing '/' (sent as %2F by both clients) and the
// offset/limit/subjectPrefix listing parameters work.
#[tokio::test]
async fn encoded_subjects_and_paging() {
    let h = Harness::new();
    let res = h.register("team%2Forders-value", r#""int""#).await;
    assert_eq!(res.json()["subject"], "team/orders-value");
    for s in ["a", "b", "c"] {
        h.register(s, r#""int""#).await;
    }
    assert_eq!(
        h.get("/subjects").await.json(),
        json!(["a", "b", "c", "team/orders-value"])
    );
    assert_eq!(
        h.get("/subjects?offset=1&limit=2").await.json(),
        json!(["b", "c"])
    );
    assert_eq!(
        h.get("/subjects?offset=0&limit=-1&subjectPrefix=team")
            .await
            .json(),
        json!(["team/orders-value"])
    );
    assert_eq!(
        h.get("/subjects/team%2Forders-value/versions/1")
            .await
            .json()["id"],
        1
    );
}

// Proves persistence across a restart: state written by one app is read by
// a second app over the same directory with the same ids, versions and
// levels, and the next new schema continues the id sequence.
#[tokio::test]
async fn state_survives_restart() {
    let h = Harness::new();
    h.register("r", &request_union("string", "")).await;
    h.register("r", &request_union("string", OPTIONAL_CHANNEL))
        .await;
    h.register("other", r#""string""#).await;
    h.put("/config/r", json!({"compatibility": "FULL"})).await;
    let file: Value =
        serde_json::from_slice(&std::fs::read(h.dir.path().join("registry.json")).unwrap())
            .unwrap();
    assert_eq!(file["format"], 1);

    let restarted = Harness {
        app: app(AppState::open(h.dir.path()).unwrap()),
        dir: h.dir,
    };
    let latest = restarted.get("/subjects/r/versions/latest").await.json();
    assert_eq!(
        (latest["version"].clone(), latest["id"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(
        restarted.get("/schemas/ids/3").await.json(),
        json!({"schema": "\"string\""})
    );
    assert_eq!(
        restarted.get("/config/r").await.json(),
        json!({"compatibilityLevel": "FULL"})
    );
    assert_eq!(restarted.register("new", r#""long""#).await.json()["id"], 4);
    assert_eq!(
        restarted.register("again", r#""string""#).await.json()["id"],
        3
    );
}
