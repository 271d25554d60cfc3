//! The data plane's HTTP APIs as the tests call them through a pipeline's Services: inventory
//! updates to the write API, inventory reads from the read API.

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

/// A read of `product` at S1 from the read API at `serve`: its status code (0 without an answer
/// within 5 s), its quantity when answered, and how long it took.
pub async fn read_inventory(serve: &str, product: &str) -> (u16, Option<i64>, Duration) {
    let t = Instant::now();
    let Ok(answer) = reqwest::Client::new()
        .get(format!("{serve}/v1/inventory/{product}/S1"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
    else {
        return (0, None, t.elapsed());
    };
    let code = answer.status().as_u16();
    let body: serde_json::Value = answer.json().await.unwrap_or_default();
    let quantity = if code == 200 {
        body["quantity"].as_i64()
    } else {
        None
    };
    (code, quantity, t.elapsed())
}

/// The quantity of `product` at S1, when the read API answers it.
pub async fn quantity(serve: &str, product: &str) -> Option<i64> {
    read_inventory(serve, product).await.1
}
