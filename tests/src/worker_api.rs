//! The data plane's HTTP APIs as the tests call them through a pipeline's Services: inventory and
//! product updates to the write API, reads from the read API.

use std::time::{Duration, Instant};

/// One inventory update of `product` at location S1, as the write API takes it (NDJSON).
pub fn inventory(event_id: &str, product: &str, quantity: i64, seq: u64) -> String {
    format!(
        r#"{{"event_id":"{event_id}","class":"inventory","schema_version":2,"key":{{"product_id":"{product}","location":"S1"}},"event_time":{},"sequence":{seq},"payload":{{"quantity":{quantity}}}}}"#,
        1_700_000_000_000i64 + seq as i64
    ) + "\n"
}

/// POSTs `body` to the write API at `url`, with `token` as bearer if given; the status code, or 0
/// when no answer came within 10 s. Only a 200 is an acknowledgement.
pub async fn post_updates(url: &str, token: Option<&str>, body: String) -> u16 {
    let mut req = reqwest::Client::new()
        .post(format!("{url}/v1/updates"))
        .header("content-type", "application/x-ndjson")
        .timeout(Duration::from_secs(10))
        .body(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// One product (catalog) update of `product` named `name`, as the write API takes it (NDJSON).
pub fn product(event_id: &str, product: &str, name: &str, seq: u64) -> String {
    format!(
        r#"{{"event_id":"{event_id}","class":"product","schema_version":2,"key":{{"product_id":"{product}"}},"event_time":{},"sequence":{seq},"payload":{{"name":"{name}"}}}}"#,
        1_700_000_000_000i64 + seq as i64
    ) + "\n"
}

/// GET `path` from the read API at `serve`: the status code (0 without an answer within 5 s), the
/// JSON body (null if none), and how long it took.
pub async fn get(serve: &str, path: &str) -> (u16, serde_json::Value, Duration) {
    let t = Instant::now();
    let Ok(answer) = reqwest::Client::new()
        .get(format!("{serve}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
    else {
        return (0, serde_json::Value::Null, t.elapsed());
    };
    let code = answer.status().as_u16();
    (code, answer.json().await.unwrap_or_default(), t.elapsed())
}

/// The quantity of `product` at S1, when the read API answers it.
pub async fn quantity(serve: &str, product: &str) -> Option<i64> {
    let (code, body, _) = get(serve, &format!("/v1/inventory/{product}/S1")).await;
    (code == 200).then(|| body["quantity"].as_i64()).flatten()
}

/// The name of `product`, when the read API answers it.
pub async fn product_name(serve: &str, product: &str) -> Option<String> {
    let (code, body, _) = get(serve, &format!("/v1/products/{product}")).await;
    (code == 200)
        .then(|| body["name"].as_str().map(str::to_owned))
        .flatten()
}
