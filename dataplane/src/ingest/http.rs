//! The write API: bulk updates, the dead-letter store, snapshots and the degradation switch.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use crate::auth::{self, Guards};
use crate::ingest::admission::Admission;
use crate::ingest::body::{BodyError, format, split};
use crate::ingest::router::{JobRouter, Refused};
use crate::ingest::{Item, Job, JobResult, Outcome};
use crate::metrics::{ClassLabel, CodeLabel, Metrics};
use crate::model::{format_time, now_ms};
use crate::schema::{Mode, parse_record};
use crate::snapshot::{ImportDir, ImportError, LoadRequest, SnapshotError, Snapshots, open_import};
use crate::store::{DeadLetter, Store};

/// Errors listed per response at most; the counts are always complete.
pub(crate) const MAX_LISTED_ERRORS: usize = 100;
/// Seconds a client should wait after a 429 (also exported, for the backlog signal).
pub const RETRY_AFTER_SECONDS: u16 = 1;
/// Default share of rejected records that fails a snapshot load.
const DEFAULT_MAX_REJECTED_RATIO: f64 = 0.01;

/// Where the write API's records go: straight to the in-process writer (`streams.http`), or to
/// the per-class Kafka topics (`streams.kafka`), from which the consumer group feeds the writers.
/// Replays and deferred updates always take the in-process writers (`jobs`).
pub enum RecordSink {
    /// The in-process writer: the response reports durable per-record outcomes.
    Writer,
    /// Kafka: the response is sent once Kafka acknowledged every record.
    Kafka(Arc<crate::stream::ingest::KafkaIngest>),
}

/// Everything the write handlers share.
pub struct IngestState {
    /// Where `POST /v1/updates` records go.
    pub sink: RecordSink,
    /// The store (dead-letter listing).
    pub store: Arc<dyn Store>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Bounded admission.
    pub admission: Admission,
    /// To the writers.
    pub jobs: JobRouter,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// `ingest.queueCapacity`: a batch larger than this can never be admitted.
    pub queue_capacity: usize,
    /// `degradation.pauseNonCritical`, switchable at run time.
    pub paused: Arc<AtomicBool>,
    /// Snapshot lifecycle.
    pub snapshots: Arc<Snapshots>,
    /// Where uploads are spooled.
    pub spool_dir: PathBuf,
    /// `snapshots.importDir`, resolved: the only place `?path=` may read from.
    pub import_dir: Option<ImportDir>,
}

type Shared = State<Arc<IngestState>>;

/// The write routes: bulk updates need the ingest token, everything else the admin token
/// (dead letters hold raw records, snapshots and the switch change what every reader sees).
pub fn router(state: Arc<IngestState>, guards: &Guards) -> Router {
    let ingest = Router::new()
        .route("/v1/updates", post(updates))
        .route_layer(from_fn_with_state(guards.ingest.clone(), auth::require));
    let admin = Router::new()
        .route("/v1/deadletter", get(dead_letters))
        .route("/v1/deadletter/count", get(dead_letter_count))
        .route("/v1/deadletter/replay", post(replay_dead_letters))
        .route("/v1/snapshots", get(list_snapshots).post(load_snapshot))
        .route("/v1/snapshots/rollback", post(rollback_snapshot))
        .route(
            "/v1/admin/degradation",
            put(set_degradation).get(get_degradation),
        )
        .route_layer(from_fn_with_state(guards.admin.clone(), auth::require));
    ingest.merge(admin).with_state(state)
}

pub(crate) fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(json!({"error": message.to_string(), "code": code})),
    )
        .into_response()
}

pub(crate) fn too_busy(why: &str) -> Response {
    let mut r = error(StatusCode::TOO_MANY_REQUESTS, "backpressure", why);
    r.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(RETRY_AFTER_SECONDS),
    );
    r
}

impl IngestState {
    /// Hands a job to the writer and waits for its durable outcome.
    pub(crate) async fn submit(
        &self,
        items: Vec<Item>,
        deferred_ids: Vec<u64>,
        dead_letter_ids: Vec<u64>,
    ) -> Result<JobResult, Response> {
        let records = items.len();
        let (mut job, rx) = Job::new(items);
        job.deferred_ids = deferred_ids;
        job.dead_letter_ids = dead_letter_ids;
        match self.jobs.send(job) {
            Ok(()) => {}
            Err(Refused::Full) => {
                self.admission.refuse(Some(records));
                return Err(too_busy("writer queue is full"));
            }
            Err(e @ Refused::Stopped) => {
                return Err(error(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", e));
            }
            Err(e @ Refused::Unaligned { .. }) => {
                return Err(error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e));
            }
        }
        rx.await.map_err(|_| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the writer has stopped",
            )
        })
    }
}

async fn updates(State(s): Shared, headers: HeaderMap, body: Body) -> Response {
    let response = ingest(&s, &headers, body).await;
    s.metrics
        .ingest_requests
        .get_or_create(&CodeLabel {
            code: response.status().as_u16(),
        })
        .inc();
    response
}

async fn ingest(s: &Arc<IngestState>, headers: &HeaderMap, body: Body) -> Response {
    let Some(_slot) = s.admission.request() else {
        s.admission.refuse(None);
        return too_busy("ingest queue is full");
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "body exceeds streams.http.maxBodyBytes ({} bytes)",
                s.max_body_bytes
            ),
        )
    };
    if declared.is_some_and(|n| n > s.max_body_bytes) {
        return too_large();
    }
    let bytes = match axum::body::to_bytes(body, s.max_body_bytes).await {
        Ok(b) => b,
        Err(e) if format!("{e:?}").contains("LengthLimit") => return too_large(),
        Err(e) => return error(StatusCode::BAD_REQUEST, "body_unreadable", e),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let fmt = match format(content_type, &bytes) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "content_type", e),
    };
    let metrics = s.metrics.clone();
    let body = bytes.clone();
    let parsed = tokio::task::spawn_blocking(move || parse_records(&body, fmt, &metrics)).await;
    let items = match parsed {
        Ok(Ok(items)) => items,
        Ok(Err(e @ BodyError::Empty)) => return error(StatusCode::BAD_REQUEST, "empty_batch", e),
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, "malformed_body", e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    };
    if items.len() > s.queue_capacity {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "batch of {} records exceeds ingest.queueCapacity ({}); split it",
                items.len(),
                s.queue_capacity
            ),
        );
    }
    let Some(_permit) = s.admission.records(items.len()) else {
        s.admission.refuse(Some(items.len()));
        return too_busy("ingest queue is full");
    };
    let errors: Vec<Value> = items
        .iter()
        .enumerate()
        .filter_map(|(i, (_, item))| match item {
            Item::Rejected(dl) => Some(json!({"index": i, "field": dl.field, "error": dl.reason})),
            Item::Update(_) => None,
        })
        .take(MAX_LISTED_ERRORS)
        .collect();
    let (outcomes, durable) = match &s.sink {
        RecordSink::Writer => {
            let items = items.into_iter().map(|(_, item)| item).collect();
            match s.submit(items, Vec::new(), Vec::new()).await {
                Ok(Ok(o)) => (o, None),
                Ok(Err(e)) => {
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "commit_failed",
                        format!("nothing in this batch was acknowledged: {e}"),
                    );
                }
                Err(response) => return response,
            }
        }
        // `accepted` counts records Kafka acknowledged: their dedup/stale outcome is decided
        // later by the consuming writer, and `"durable": "kafka"` says so.
        RecordSink::Kafka(kafka) => match kafka.produce(&bytes, &items).await {
            Ok(o) => (o, Some("kafka")),
            Err(e) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "produce_failed",
                    format!("not every record of this batch was acknowledged by Kafka: {e}"),
                );
            }
        },
    };
    let mut body = counts(&outcomes);
    body["errors"] = Value::Array(errors);
    if let Some(durable) = durable {
        body["durable"] = durable.into();
    }
    let status = if outcomes.iter().all(|o| *o == Outcome::Rejected) {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

/// Parses every record, each with the byte range of its raw record in `bytes` (Kafka mode
/// produces the raw record as validated); bad records become dead letters, never errors of the
/// whole body.
pub(crate) fn parse_records(
    bytes: &[u8],
    fmt: crate::ingest::body::Format,
    metrics: &Metrics,
) -> Result<Vec<(std::ops::Range<usize>, Item)>, BodyError> {
    let received_at_ms = now_ms();
    let mut newest: HashMap<&'static str, i64> = HashMap::new();
    let base = bytes.as_ptr() as usize;
    let items: Vec<(std::ops::Range<usize>, Item)> = split(bytes, fmt)?
        .into_iter()
        .map(|raw| {
            let start = raw.as_ptr() as usize - base;
            (
                start..start + raw.len(),
                parse_one(raw, received_at_ms, &mut newest, metrics),
            )
        })
        .collect();
    // Received before admission, so events refused with 429 count as waiting too.
    for (class, t) in newest {
        let received = metrics.ingest_received.get_or_create(&ClassLabel { class });
        let t = t as f64 / 1000.0;
        if t > received.get() {
            received.set(t);
        }
    }
    Ok(items)
}

fn parse_one(
    raw: &[u8],
    received_at_ms: i64,
    newest: &mut HashMap<&'static str, i64>,
    metrics: &Metrics,
) -> Item {
    match parse_record(raw, Mode::Stream) {
        Ok(p) => {
            let t = newest
                .entry(p.update.key.class.as_str())
                .or_insert(i64::MIN);
            *t = (*t).max(p.update.version.event_time_ms);
            if p.unknown_fields > 0 {
                metrics
                    .ingest_unknown_fields
                    .get_or_create(&ClassLabel {
                        class: p.update.key.class.as_str(),
                    })
                    .inc_by(u64::from(p.unknown_fields));
            }
            Item::Update(p.update)
        }
        Err(e) => Item::Rejected(DeadLetter::stream(
            received_at_ms,
            e.class,
            e.field,
            e.message,
            raw,
        )),
    }
}

pub(crate) fn counts(outcomes: &[Outcome]) -> Value {
    let mut body = json!({});
    for o in [
        Outcome::Accepted,
        Outcome::Deduplicated,
        Outcome::Stale,
        Outcome::Deferred,
        Outcome::Rejected,
    ] {
        body[o.as_str()] = outcomes.iter().filter(|x| **x == o).count().into();
    }
    body
}

/// A query parameter, or the 400 response naming it.
fn param<T: std::str::FromStr>(
    q: &HashMap<String, String>,
    name: &str,
    default: T,
) -> Result<T, Box<Response>> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            Box::new(error(
                StatusCode::BAD_REQUEST,
                "bad_parameter",
                format!("query parameter `{name}` is invalid: {v:?}"),
            ))
        }),
    }
}

async fn dead_letters(State(s): Shared, Query(q): Query<HashMap<String, String>>) -> Response {
    let (after, limit) = match (param(&q, "after", 0_u64), param(&q, "limit", 100_usize)) {
        (Ok(a), Ok(l)) => (a, l.min(10_000)),
        (Err(r), _) | (_, Err(r)) => return *r,
    };
    match s.store.dead_letters(after, limit) {
        Ok(list) => {
            let items: Vec<Value> = list
                .into_iter()
                .map(|(id, dl)| {
                    json!({"id": id, "received_at": format_time(dl.received_at_ms), "source": dl.source,
                           "class": dl.class, "field": dl.field, "reason": dl.reason, "raw": dl.raw})
                })
                .collect();
            Json(json!({"items": items})).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "store_error", e),
    }
}

async fn dead_letter_count(State(s): Shared) -> Response {
    Json(json!({"count": s.store.dead_letter_count()})).into_response()
}

/// Re-parses stored dead letters with today's code; those that now pass are applied and
/// removed in the same commit, the rest stay.
async fn replay_dead_letters(
    State(s): Shared,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let limit = match param(&q, "limit", 1000_usize) {
        Ok(l) => l.min(10_000),
        Err(r) => return *r,
    };
    let stored = match s.store.dead_letters(0, limit) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "store_error", e),
    };
    let mut items = Vec::new();
    let mut ids = Vec::new();
    let mut still_rejected = 0;
    for (id, dl) in stored {
        match parse_record(dl.raw.as_bytes(), dl.source.mode()) {
            Ok(p) => {
                items.push(Item::Update(p.update));
                ids.push(id);
            }
            Err(_) => still_rejected += 1,
        }
    }
    if items.is_empty() {
        return Json(json!({"replayed": 0, "still_rejected": still_rejected})).into_response();
    }
    let Some(_permit) = s.admission.records(items.len()) else {
        return too_busy("ingest queue is full");
    };
    let replayed = items.len();
    match s.submit(items, Vec::new(), ids).await {
        Ok(Ok(outcomes)) => {
            let mut body = counts(&outcomes);
            body["replayed"] = replayed.into();
            body["still_rejected"] = still_rejected.into();
            Json(body).into_response()
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "commit_failed", e),
        Err(r) => r,
    }
}

async fn list_snapshots(State(s): Shared) -> Response {
    match s.snapshots.list() {
        Ok(list) => {
            Json(json!({"active": s.snapshots.active(), "snapshots": list})).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "store_error", e),
    }
}

/// Starts a load from `?path=` (inside `snapshots.importDir` only), or from the uploaded NDJSON
/// body.
async fn load_snapshot(
    State(s): Shared,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Response {
    let max_rejected_ratio = match param(&q, "max_rejected_ratio", DEFAULT_MAX_REJECTED_RATIO) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let as_of_ms = match q.get("as_of") {
        None => now_ms(),
        Some(t) => match crate::schema::parse_time(&Value::String(t.clone())) {
            Ok(ms) => ms,
            Err(m) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_parameter",
                    format!("as_of: {m}"),
                );
            }
        },
    };
    let request = match q.get("path") {
        Some(p) => match open_import(s.import_dir.as_ref(), p) {
            Ok((file, input)) => LoadRequest {
                file,
                input,
                remove_file: false,
                as_of_ms,
                max_rejected_ratio,
            },
            Err(e @ ImportError::Disabled) => {
                return error(StatusCode::FORBIDDEN, "import_disabled", e);
            }
            Err(e @ (ImportError::ParentComponent | ImportError::Outside(_))) => {
                return error(StatusCode::FORBIDDEN, "path_not_allowed", e);
            }
            Err(e @ ImportError::Unreadable(_)) => {
                return error(StatusCode::BAD_REQUEST, "bad_parameter", e);
            }
        },
        None => {
            let spooled = spool(&s.spool_dir, body).await.and_then(|f| {
                let input = std::fs::File::open(&f).map_err(|e| e.to_string())?;
                Ok((f, input))
            });
            match spooled {
                Ok((file, input)) => LoadRequest {
                    file,
                    input,
                    remove_file: true,
                    as_of_ms,
                    max_rejected_ratio,
                },
                Err(e) => return error(StatusCode::BAD_REQUEST, "upload_failed", e),
            }
        }
    };
    match s.snapshots.begin(request) {
        Ok(meta) => (StatusCode::ACCEPTED, Json(json!(meta))).into_response(),
        Err(e @ SnapshotError::Busy(_)) => error(StatusCode::CONFLICT, "busy", e),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "store_error", e),
    }
}

/// Streams an upload to a file so that a large snapshot never sits in memory.
async fn spool(dir: &std::path::Path, body: Body) -> Result<PathBuf, String> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let path = dir.join(format!(
        "snapshot-upload-{}-{}.ndjson",
        now_ms(),
        fastrand::u32(..)
    ));
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        file.write_all(&chunk).await.map_err(|e| e.to_string())?;
    }
    file.flush().await.map_err(|e| e.to_string())?;
    Ok(path)
}

async fn rollback_snapshot(State(s): Shared) -> Response {
    match s.snapshots.rollback() {
        Ok(v) => Json(json!({"active": v})).into_response(),
        Err(e @ (SnapshotError::NoPrevious | SnapshotError::Busy(_))) => {
            error(StatusCode::CONFLICT, "no_rollback", e)
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "store_error", e),
    }
}

async fn get_degradation(State(s): Shared) -> Response {
    Json(json!({"pauseNonCritical": s.paused.load(Ordering::Relaxed), "deferred": s.store.deferred_count()}))
        .into_response()
}

async fn set_degradation(State(s): Shared, body: axum::body::Bytes) -> Response {
    let pause = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("pauseNonCritical").and_then(Value::as_bool));
    match pause {
        Some(p) => {
            s.paused.store(p, Ordering::Relaxed);
            tracing::info!(pause_non_critical = p, "degradation switched");
            get_degradation(State(s)).await
        }
        None => error(
            StatusCode::BAD_REQUEST,
            "bad_body",
            "expected {\"pauseNonCritical\": true|false}",
        ),
    }
}
