//! Bad HTTP input gets a clear JSON error with a stable code and a 4xx, never
//! a 500, and the service keeps serving. Runs against the real ingress.

use flashsale_testkit::{unique, Api, Env};
use reqwest::{Method, StatusCode};

/// One bad request: name, method, path, content type, body, expected status and code.
type Case<'a> = (
    &'a str,
    Method,
    String,
    Option<&'a str>,
    Vec<u8>,
    StatusCode,
    &'a str,
);

/// Sends every malformed request the issue lists (malformed JSON, wrong
/// types, missing fields, quantity ≤ 0 or too large, oversized body, bad IDs,
/// wrong content type, unknown route) and checks each status and code; then
/// proves a valid purchase still succeeds and /metrics still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_4xx_and_service_keeps_serving() {
    let api = Api::new(&Env::from_env().ingress_url);
    let product = unique("bad-input");
    api.configure_sale(&product, 5, 5).await.unwrap();
    let path = format!("/api/v1/sales/{product}/purchases");
    for case in cases(&path) {
        gets_its_error(&api, case).await;
    }
    oversized_body_gets_413(&api, &path).await;
    still_serving(&api, &product).await;
}

/// The content type of a JSON body.
const JSON: Option<&str> = Some("application/json");

/// Every bad request but the oversized body, in order; `path` is the
/// purchases path of a configured sale.
fn cases(path: &str) -> Vec<Case<'static>> {
    [
        body_cases(path),
        quantity_cases(path),
        id_cases(path),
        content_type_cases(path),
        sale_cases(),
        route_cases(path),
    ]
    .concat()
}

/// Purchase bodies that are not JSON or not the purchase's shape.
fn body_cases(path: &str) -> Vec<Case<'static>> {
    vec![
        (
            "malformed json",
            Method::POST,
            path.to_owned(),
            JSON,
            b"{\"user_id\":".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "wrong type",
            Method::POST,
            path.to_owned(),
            JSON,
            br#"{"user_id":"u","quantity":"one"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "missing field",
            Method::POST,
            path.to_owned(),
            JSON,
            br#"{"quantity":1}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "unknown field",
            Method::POST,
            path.to_owned(),
            JSON,
            br#"{"user_id":"u","quantity":1,"coupon":"x"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ]
}

/// Purchases of a quantity ≤ 0 or too large.
fn quantity_cases(path: &str) -> Vec<Case<'static>> {
    vec![
        (
            "quantity zero",
            Method::POST,
            path.to_owned(),
            JSON,
            br#"{"user_id":"u","quantity":0}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_quantity",
        ),
        (
            "quantity negative",
            Method::POST,
            path.to_owned(),
            JSON,
            br#"{"user_id":"u","quantity":-3}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_quantity",
        ),
        (
            "quantity too large",
            Method::POST,
            path.to_owned(),
            JSON,
            br#"{"user_id":"u","quantity":100000}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_quantity",
        ),
    ]
}

/// Purchases with a bad user, request or product ID.
fn id_cases(path: &str) -> Vec<Case<'static>> {
    vec![
        (
            "empty user",
            Method::POST,
            path.to_owned(),
            JSON,
            br#"{"user_id":"","quantity":1}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_id",
        ),
        (
            "bad request id",
            Method::POST,
            path.to_owned(),
            JSON,
            br#"{"user_id":"u","quantity":1,"request_id":"a b"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_id",
        ),
        (
            "bad product in path",
            Method::POST,
            "/api/v1/sales/bad%20id/purchases".into(),
            JSON,
            br#"{"user_id":"u","quantity":1}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_id",
        ),
    ]
}

/// Purchases that are not sent as JSON.
fn content_type_cases(path: &str) -> Vec<Case<'static>> {
    vec![
        (
            "not json content type",
            Method::POST,
            path.to_owned(),
            Some("text/plain"),
            br#"{"user_id":"u","quantity":1}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "no content type",
            Method::POST,
            path.to_owned(),
            None,
            br#"{"user_id":"u","quantity":1}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ]
}

/// Sale commands with bad terms.
fn sale_cases() -> Vec<Case<'static>> {
    vec![
        (
            "bad sale",
            Method::POST,
            "/api/v1/sales".into(),
            JSON,
            br#"{"product_id":"p","stock":-1,"per_user_limit":1,"price":"1.00"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_sale",
        ),
        (
            "bad price",
            Method::POST,
            "/api/v1/sales".into(),
            JSON,
            br#"{"product_id":"p","stock":1,"per_user_limit":1,"price":"abc"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_sale",
        ),
    ]
}

/// Requests no route or method takes.
fn route_cases(path: &str) -> Vec<Case<'static>> {
    vec![
        (
            "unknown route",
            Method::GET,
            "/api/v1/nope".into(),
            None,
            vec![],
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "wrong method",
            Method::DELETE,
            path.to_owned(),
            None,
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ]
}

/// Sends one bad request and checks its status, code and message.
async fn gets_its_error(
    api: &Api,
    (name, method, path, content_type, body, status, code): Case<'_>,
) {
    let answer = api.raw(method, &path, content_type, body).await.unwrap();
    assert_eq!(answer.status, status, "{name}: {answer:?}");
    assert_eq!(answer.error_code(), Some(code), "{name}: {answer:?}");
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{name}"
    );
}

/// After all the bad input, a valid purchase still succeeds and /metrics
/// still answers.
async fn still_serving(api: &Api, product: &str) {
    let ok = api
        .purchase(product, "after-bad-input", 1, None)
        .await
        .unwrap();
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    assert_eq!(ok.body["status"], "accepted");
    let metrics = api
        .client
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("flashsale_http_requests_total"), "{text}");
}

/// A body over the 16 KiB default limit gets 413 payload_too_large. The
/// server answers as soon as it has read past the limit and does not read
/// the rest, so a client still sending may see the connection reset before
/// it reads the answer: a transport race, not an answer. Those attempts are
/// retried (boundedly); every answer that does arrive must be the 413.
async fn oversized_body_gets_413(api: &Api, path: &str) {
    let huge = format!(
        "{{\"user_id\":\"u\",\"quantity\":1,\"pad\":\"{}\"}}",
        "x".repeat(17 * 1024)
    );
    let mut answer = None;
    for _ in 0..20 {
        let sent = api
            .raw(Method::POST, path, JSON, huge.clone().into_bytes())
            .await;
        if let Ok(a) = sent {
            answer = Some(a);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let answer = answer.expect("the oversized body got an answer within 20 attempts");
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{answer:?}");
    assert_eq!(answer.error_code(), Some("payload_too_large"), "{answer:?}");
}
