//! The read API. Each request is one query class, answered from the response cache or by
//! single-partition reads under a deadline. There are no retries here: a read past its
//! deadline fails fast with 503 and the caller decides.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::auth::{self, Guard};
use crate::cache::Cache;
use crate::metrics::{ClassLabel, Metrics, RequestLabels};
use crate::model::{Class, EntityKey, SubKey, now_ms};
use crate::schema::{normalise_id, parse_time};
use crate::serve::reader::{Reader, valid_to};

/// A response as cached: status and JSON body.
pub type Cached = Arc<(StatusCode, Bytes)>;

/// Everything the read handlers share.
pub struct ServeState {
    /// Entity reads.
    pub reader: Arc<Reader>,
    /// Assembled responses.
    pub responses: Cache<String, Cached>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Deadline of one read.
    pub read_timeout: Duration,
    /// `faults.readErrorPercent`: reads failed on purpose (0 in production).
    pub read_error_percent: f64,
}

/// A computed answer and how long it may be cached.
struct Answer {
    status: StatusCode,
    body: Value,
    ttl: Duration,
}

/// A client error found before reading anything.
struct BadRequest(String);

type Shared = State<Arc<ServeState>>;

/// The read routes, behind the read token when one is configured.
pub fn router(state: Arc<ServeState>, guard: Guard) -> Router {
    Router::new()
        .route("/v1/products/{product_id}", get(product))
        .route("/v1/prices/{product_id}", get(price))
        .route("/v1/inventory/{product_id}/{location}", get(inventory))
        .route("/v1/fulfillment/{product_id}/{region}", get(fulfillment))
        .route("/v1/product-detail/{product_id}", get(product_detail))
        .route("/v1/categories/{id}", get(category))
        .route("/v1/brands/{id}", get(brand))
        .route("/v1/attributes/{id}", get(attribute))
        .route_layer(from_fn_with_state(guard, auth::require))
        .with_state(state)
}

fn error_body(code: &str, message: &str) -> Value {
    json!({"error": message, "code": code})
}

fn not_found(what: &str, ttl: Duration) -> Answer {
    Answer {
        status: StatusCode::NOT_FOUND,
        body: error_body("not_found", &format!("{what} not found")),
        ttl,
    }
}

fn id(raw: &str, name: &str, upper: bool) -> Result<String, BadRequest> {
    normalise_id(raw, upper).map_err(|m| BadRequest(format!("{name}: {m}")))
}

fn at_param(q: &HashMap<String, String>) -> Result<Option<i64>, BadRequest> {
    q.get("at")
        .map(|s| {
            let v = s
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(s.clone()));
            parse_time(&v).map_err(|m| BadRequest(format!("at: {m}")))
        })
        .transpose()
}

impl ServeState {
    /// Answers from the response cache or computes under the deadline; records the SLIs.
    fn answer(
        &self,
        class: &'static str,
        partition: Result<String, BadRequest>,
        cache_key: impl FnOnce(&str) -> String,
        compute: impl FnOnce(&Reader, &str) -> Result<Answer, String>,
    ) -> Response {
        let started = Instant::now();
        let (status, body) = match partition {
            Err(BadRequest(m)) => (
                StatusCode::BAD_REQUEST,
                json_bytes(&error_body("bad_request", &m)),
            ),
            Ok(_)
                if self.read_error_percent > 0.0
                    && fastrand::f64() * 100.0 < self.read_error_percent =>
            {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json_bytes(&error_body(
                        "injected_fault",
                        "failed on purpose (faults.readErrorPercent)",
                    )),
                )
            }
            Ok(partition) => {
                let key = format!("{}|{}", self.reader.snapshot(), cache_key(&partition));
                match self.responses.get(&key) {
                    Some(hit) => hit.as_ref().clone(),
                    None => self.compute(key, partition, started, compute),
                }
            }
        };
        self.metrics
            .read_duration
            .get_or_create(&ClassLabel { class })
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .read_requests
            .get_or_create(&RequestLabels {
                class,
                code: status.as_u16(),
            })
            .inc();
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }

    /// Reads under the deadline. The embedded store answers from memory or its block cache in
    /// microseconds, so the read runs inline on the request's task (a hand-off to a blocking
    /// pool cost more than the read itself); a request that has already spent its deadline
    /// waiting is failed fast instead of adding load.
    fn compute(
        &self,
        key: String,
        partition: String,
        started: Instant,
        compute: impl FnOnce(&Reader, &str) -> Result<Answer, String>,
    ) -> (StatusCode, Bytes) {
        if started.elapsed() >= self.read_timeout {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                json_bytes(&error_body("timeout", "read deadline exceeded")),
            );
        }
        let ticket = self.reader.ticket();
        match compute(&self.reader, &partition) {
            Ok(answer) => {
                let body = json_bytes(&answer.body);
                let cached = Arc::new((answer.status, body.clone()));
                self.responses
                    .insert(key, cached, answer.ttl, &partition, ticket);
                (answer.status, body)
            }
            Err(e) => {
                tracing::warn!(error = %e, "read failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json_bytes(&error_body("store_error", "the store could not answer")),
                )
            }
        }
    }
}

fn json_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// Answers a point lookup of one entity.
fn point(reader: &Reader, key: &EntityKey) -> Result<Answer, String> {
    let ttl = reader.ttl(key.class);
    Ok(match reader.entity(key).map_err(|e| e.to_string())? {
        Some(e) => Answer {
            status: StatusCode::OK,
            body: e.to_json(key),
            ttl,
        },
        None => not_found(key.class.as_str(), ttl),
    })
}

fn point_route(
    state: Arc<ServeState>,
    class: Class,
    query_class: &'static str,
    raw_id: String,
    sub: Option<(&'static str, String)>,
) -> Response {
    let parsed = id(&raw_id, class.key_fields()[0], false).and_then(|pid| {
        let sub = match &sub {
            None => None,
            Some((name, raw)) => Some(SubKey::Code(id(raw, name, true)?)),
        };
        Ok((pid, sub))
    });
    let (partition, sub) = match parsed {
        Ok((p, s)) => (Ok(p), s),
        Err(e) => (Err(e), None),
    };
    let suffix = match &sub {
        Some(SubKey::Code(c)) => c.clone(),
        _ => String::new(),
    };
    state.answer(
        query_class,
        partition,
        move |p| format!("{query_class}|{p}|{suffix}"),
        move |reader, pid| {
            point(
                reader,
                &EntityKey {
                    class,
                    id: pid.to_owned(),
                    sub,
                },
            )
        },
    )
}

async fn product(State(s): Shared, Path(pid): Path<String>) -> Response {
    point_route(s, Class::Product, "product", pid, None)
}

async fn inventory(State(s): Shared, Path((pid, loc)): Path<(String, String)>) -> Response {
    point_route(
        s,
        Class::Inventory,
        "inventory",
        pid,
        Some(("location", loc)),
    )
}

async fn fulfillment(State(s): Shared, Path((pid, region)): Path<(String, String)>) -> Response {
    point_route(
        s,
        Class::Fulfillment,
        "fulfillment",
        pid,
        Some(("region", region)),
    )
}

async fn category(State(s): Shared, Path(id): Path<String>) -> Response {
    point_route(s, Class::Category, "category", id, None)
}

async fn brand(State(s): Shared, Path(id): Path<String>) -> Response {
    point_route(s, Class::Brand, "brand", id, None)
}

async fn attribute(State(s): Shared, Path(id): Path<String>) -> Response {
    point_route(s, Class::Attribute, "attribute", id, None)
}

/// The price answer at `at` (now if absent); never cached past the window's end.
fn price_answer(
    reader: &Reader,
    pid: &str,
    at: Option<i64>,
) -> Result<(Option<Value>, Duration), String> {
    let at_ms = at.unwrap_or_else(now_ms);
    let mut ttl = reader.ttl(Class::Pricing);
    let found = reader.price_at(pid, at_ms).map_err(|e| e.to_string())?;
    Ok(match found {
        Some((key, entity)) => {
            if at.is_none()
                && let Some(end) = valid_to(&entity)
            {
                ttl = ttl.min(Duration::from_millis((end - at_ms).max(0) as u64));
            }
            (Some(entity.to_json(&key)), ttl)
        }
        None => (None, ttl),
    })
}

async fn price(
    State(s): Shared,
    Path(pid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let parsed = id(&pid, "product_id", false).and_then(|p| Ok((p, at_param(&q)?)));
    let (partition, at) = match parsed {
        Ok((p, at)) => (Ok(p), at),
        Err(e) => (Err(e), None),
    };
    s.answer(
        "pricing",
        partition,
        move |p| format!("pricing|{p}|{at:?}"),
        move |reader, pid| {
            let (body, ttl) = price_answer(reader, pid, at)?;
            Ok(match body {
                Some(body) => Answer {
                    status: StatusCode::OK,
                    body,
                    ttl,
                },
                None => not_found("price in effect", ttl),
            })
        },
    )
}

/// Product + current price + inventory at one location + fulfillment for one region, all from
/// the product's own partition.
async fn product_detail(
    State(s): Shared,
    Path(pid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let parsed = (|| {
        let pid = id(&pid, "product_id", false)?;
        let location = q
            .get("location")
            .map(|l| id(l, "location", true))
            .transpose()?;
        let region = q.get("region").map(|r| id(r, "region", true)).transpose()?;
        Ok((pid, location, region, at_param(&q)?))
    })();
    let (partition, location, region, at) = match parsed {
        Ok((p, l, r, at)) => (Ok(p), l, r, at),
        Err(e) => (Err(e), None, None, None),
    };
    let (l, r) = (location.clone(), region.clone());
    s.answer(
        "productDetail",
        partition,
        move |p| format!("detail|{p}|{l:?}|{r:?}|{at:?}"),
        move |reader, pid| {
            let product_key = EntityKey {
                class: Class::Product,
                id: pid.to_owned(),
                sub: None,
            };
            let mut ttl = reader.ttl(Class::Product);
            let Some(product) = reader.entity(&product_key).map_err(|e| e.to_string())? else {
                return Ok(not_found("product", ttl));
            };
            let (price, price_ttl) = price_answer(reader, pid, at)?;
            ttl = ttl.min(price_ttl);
            let mut part = |class: Class, code: Option<String>| -> Result<Value, String> {
                let Some(code) = code else {
                    return Ok(Value::Null);
                };
                ttl = ttl.min(reader.ttl(class));
                let key = EntityKey {
                    class,
                    id: pid.to_owned(),
                    sub: Some(SubKey::Code(code)),
                };
                Ok(reader
                    .entity(&key)
                    .map_err(|e| e.to_string())?
                    .map_or(Value::Null, |e| e.to_json(&key)))
            };
            let inventory = part(Class::Inventory, location)?;
            let fulfillment = part(Class::Fulfillment, region)?;
            Ok(Answer {
                status: StatusCode::OK,
                body: json!({
                    "product": product.to_json(&product_key),
                    "price": price,
                    "inventory": inventory,
                    "fulfillment": fulfillment,
                }),
                ttl,
            })
        },
    )
}
