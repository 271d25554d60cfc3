//! Batch snapshots: a full baseline loaded from NDJSON as a new version, then made visible at
//! once by flipping the durable "active version" pointer.
//!
//! A load writes under its own version prefix, which no reader looks at until the pointer flips,
//! so readers see the old baseline until the new one is complete. A load that fails, or a
//! process that dies mid-load, leaves a `loading` version behind that is deleted whole (at the
//! failure, or at the next start). Rollback flips the pointer back to the previous complete
//! version. Streaming updates live in their own layer and are merged over whichever baseline is
//! active, field by field, by version: baseline fields carry the snapshot's `as_of` time.

use std::fs::File;
use std::io::{BufRead, Seek};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::feed::{ChangeEvent, ChangeFeed, Invalidate};
use crate::merge::apply;
use crate::metrics::{ClassLabel, Metrics};
use crate::model::{Class, Entity, EntityKey, now_ms};
use crate::schema::{Mode, RecordError, parse_record};
use crate::store::{
    DeadLetter, DeadLetterSource, Layer, MAX_DEAD_LETTER_RAW, SnapshotMeta, SnapshotState, Store,
    StoreError, WriteSet,
};

/// Records per (non-durable) write while loading; the completion marker is the durable point.
const CHUNK: usize = 10_000;

/// Why a snapshot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Another load is running.
    #[error("snapshot {0} is still loading")]
    Busy(u64),
    /// Nothing to roll back to.
    #[error("no complete snapshot older than the active one")]
    NoPrevious,
    /// The input could not be read.
    #[error("cannot read snapshot input {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Too many records were rejected.
    #[error("{rejected} of {total} records rejected, above the limit of {limit}")]
    TooManyRejected {
        /// Rejected records.
        rejected: u64,
        /// All records.
        total: u64,
        /// Largest allowed ratio.
        limit: f64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a `?path=` was refused. Messages never show where a path resolved to: that would reveal
/// the layout outside the import directory.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// No `snapshots.importDir` is configured.
    #[error(
        "path: loading files from the server is disabled; set snapshots.importDir, or upload the snapshot as the request body"
    )]
    Disabled,
    /// The path has a `..` component.
    #[error("path: must not contain `..`")]
    ParentComponent,
    /// The path (or a symlink on it) leads outside the import directory.
    #[error("path: {0:?} is outside snapshots.importDir")]
    Outside(String),
    /// Nothing readable there.
    #[error("path: {0:?} is not a readable file in snapshots.importDir")]
    Unreadable(String),
}

/// `snapshots.importDir` as configured and as resolved (symlinks followed) at start. Requests
/// may name files under either spelling; what they resolve to must be under the resolved one.
#[derive(Clone, Debug)]
pub struct ImportDir {
    configured: PathBuf,
    resolved: PathBuf,
}

impl ImportDir {
    /// Resolves `configured`, which must be an existing directory.
    pub fn resolve(configured: &Path) -> std::io::Result<Self> {
        let resolved = configured.canonicalize()?;
        if !resolved.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        Ok(Self {
            configured: configured.to_owned(),
            resolved,
        })
    }

    /// The directory with every symlink resolved.
    pub fn resolved(&self) -> &Path {
        &self.resolved
    }
}

/// Opens `requested` (absolute, or relative to the import directory) if it is a regular file
/// that resolves inside the import directory, following symlinks. The file is opened once here
/// and read through that handle, so swapping the path afterwards changes nothing.
pub fn open_import(
    dir: Option<&ImportDir>,
    requested: &str,
) -> Result<(PathBuf, File), ImportError> {
    let dir = dir.ok_or(ImportError::Disabled)?;
    let import_dir = dir.resolved.as_path();
    let path = Path::new(requested);
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(ImportError::ParentComponent);
    }
    let outside = || ImportError::Outside(requested.to_owned());
    let unreadable = || ImportError::Unreadable(requested.to_owned());
    // Checked before touching the file system, so that paths elsewhere are refused the same
    // way whether they exist or not.
    let joined = import_dir.join(path);
    if !joined.starts_with(import_dir) && !joined.starts_with(&dir.configured) {
        return Err(outside());
    }
    let resolved = joined.canonicalize().map_err(|_| unreadable())?;
    if !resolved.starts_with(import_dir) {
        return Err(outside());
    }
    if !resolved.metadata().is_ok_and(|m| m.is_file()) {
        return Err(unreadable());
    }
    let file = File::open(&resolved).map_err(|_| unreadable())?;
    // A directory on the way could have been swapped for a symlink between the check and the
    // open; where the kernel can tell what was opened, check that too.
    if let Some(opened) = opened_path(&file)
        && !opened.starts_with(import_dir)
    {
        return Err(outside());
    }
    Ok((resolved, file))
}

#[cfg(target_os = "linux")]
fn opened_path(file: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

#[cfg(not(target_os = "linux"))]
fn opened_path(_: &File) -> Option<PathBuf> {
    None
}

/// The snapshot lifecycle and the active version.
pub struct Snapshots {
    store: Arc<dyn Store>,
    feed: Arc<dyn ChangeFeed>,
    metrics: Arc<Metrics>,
    active: AtomicU64,
    loading: Mutex<Option<u64>>,
}

/// What to load.
pub struct LoadRequest {
    /// NDJSON file of records (for messages and removal).
    pub file: PathBuf,
    /// The file, opened once and read through this handle.
    pub input: File,
    /// Delete the file when done (uploads).
    pub remove_file: bool,
    /// Time the snapshot represents, epoch milliseconds.
    pub as_of_ms: i64,
    /// Largest share of rejected records before the load fails.
    pub max_rejected_ratio: f64,
}

/// What opening the lifecycle does with loads that are still `loading`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptedLoads {
    /// Discard them: this process is the store's only writer, so a `loading` version is one its
    /// previous run left behind.
    Discard,
    /// Keep them: other workers share the store (a distributed pipeline), and a `loading` version
    /// may be another worker's load in progress. One left by a crash stays listed as `loading`,
    /// is never activated, and never blocks a new load (which takes the next version).
    Keep,
}

impl Snapshots {
    /// Opens the lifecycle: deletes loads interrupted by a crash (when `interrupted` says so) and
    /// reads the active version.
    pub fn open(
        store: Arc<dyn Store>,
        feed: Arc<dyn ChangeFeed>,
        metrics: Arc<Metrics>,
        interrupted: InterruptedLoads,
    ) -> Result<Self, StoreError> {
        for meta in store.snapshots()? {
            if meta.state == SnapshotState::Loading && interrupted == InterruptedLoads::Discard {
                tracing::warn!(
                    version = meta.version,
                    "discarding interrupted snapshot load"
                );
                store.remove_snapshot_dead_letters(meta.version)?;
                store.discard_snapshot(meta.version)?;
            }
        }
        let active = store.active_snapshot()?.unwrap_or(0);
        let s = Self {
            store,
            feed,
            metrics,
            active: AtomicU64::new(active),
            loading: Mutex::new(None),
        };
        s.publish_metrics()?;
        Ok(s)
    }

    /// The active version; 0 when no snapshot was ever activated.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Acquire)
    }

    /// All versions.
    pub fn list(&self) -> Result<Vec<SnapshotMeta>, StoreError> {
        self.store.snapshots()
    }

    /// Starts loading a new version in the background; returns its initial metadata.
    pub fn begin(self: &Arc<Self>, request: LoadRequest) -> Result<SnapshotMeta, SnapshotError> {
        let mut loading = self.loading.lock();
        if let Some(v) = *loading {
            return Err(SnapshotError::Busy(v));
        }
        let version = self
            .store
            .snapshots()?
            .last()
            .map_or(1, |m| m.version + 1)
            .max(self.active() + 1);
        let meta = SnapshotMeta {
            version,
            state: SnapshotState::Loading,
            as_of_ms: request.as_of_ms,
            completed_at_ms: None,
            records: 0,
            rejected: 0,
        };
        self.store.put_snapshot_meta(&meta, false)?;
        *loading = Some(version);
        let this = self.clone();
        let started = meta.clone();
        std::thread::Builder::new()
            .name(format!("snapshot-{version}"))
            .spawn(move || {
                let result = this.load(started, &request);
                if request.remove_file {
                    let _ = std::fs::remove_file(&request.file);
                }
                match result {
                    Ok(m) => tracing::info!(version, records = m.records, rejected = m.rejected, "snapshot active"),
                    Err(e) => {
                        tracing::error!(version, error = %e, "snapshot load failed; discarding it");
                        if let Err(e) = this.discard_failed(version) {
                            tracing::error!(version, error = %e, "discarding failed snapshot failed");
                        }
                    }
                }
                *this.loading.lock() = None;
            })
            .map_err(|source| SnapshotError::Io {
                path: "<thread>".into(),
                source,
            })?;
        Ok(meta)
    }

    fn load(
        &self,
        mut meta: SnapshotMeta,
        request: &LoadRequest,
    ) -> Result<SnapshotMeta, SnapshotError> {
        let version = meta.version;
        let layer = Layer::Baseline(version);
        let mut total = 0_u64;
        // The first pass parses every line and remembers each line's rank, so that the later
        // passes parse only their own lines (one byte per line).
        let mut ranks: Vec<u8> = Vec::new();
        for rank in 0..=2 {
            let mut set = WriteSet::default();
            let mut staged: Vec<(EntityKey, Entity)> = Vec::new();
            for_each_line(&request.file, &request.input, |line_no, line| {
                let index = (line_no - 1) as usize;
                if rank > 0 && ranks.get(index) != Some(&rank) {
                    return Ok(());
                }
                let mode = Mode::Snapshot {
                    version,
                    as_of_ms: request.as_of_ms,
                    line: line_no,
                };
                let parsed = parse_record(line, mode);
                if rank == 0 {
                    ranks.resize(index + 1, u8::MAX);
                    ranks[index] = match &parsed {
                        Ok(p) => p.update.key.class.rank(),
                        Err(e) => e.class.map_or(u8::MAX, Class::rank),
                    };
                }
                let parsed = parsed.and_then(|p| {
                    if p.update.key.class.rank() == rank {
                        self.check_references(version, &p.update).map(|()| Some(p))
                    } else {
                        Ok(None)
                    }
                });
                match parsed {
                    Ok(Some(p)) => {
                        let mut entity = Entity::default();
                        let mut update = p.update;
                        // Later lines for the same key win within one snapshot.
                        update.version.sequence = line_no;
                        apply(&mut entity, &update);
                        staged.push((update.key, entity));
                        meta.records += 1;
                    }
                    Ok(None) => {}
                    // Unreadable records are counted once, in the first pass.
                    Err(e)
                        if e.class.is_none_or(|c| c.rank() == rank)
                            && (e.class.is_some() || rank == 0) =>
                    {
                        meta.rejected += 1;
                        self.metrics
                            .dead_letters
                            .get_or_create(&ClassLabel {
                                class: e.class.map_or("unknown", Class::as_str),
                            })
                            .inc();
                        set.dead_letters.push(dead_letter(
                            &e,
                            line,
                            version,
                            request.as_of_ms,
                            line_no,
                        ));
                    }
                    Err(_) => {}
                }
                if rank == 0 {
                    total += 1;
                }
                if staged.len() + set.dead_letters.len() >= CHUNK {
                    self.flush(layer, &mut staged, &mut set)?;
                }
                Ok(())
            })?;
            self.flush(layer, &mut staged, &mut set)?;
        }
        if total > 0 && meta.rejected as f64 / total as f64 > request.max_rejected_ratio {
            return Err(SnapshotError::TooManyRejected {
                rejected: meta.rejected,
                total,
                limit: request.max_rejected_ratio,
            });
        }
        // Everything above is in the journal; this write makes it durable and visible at once.
        self.store.commit(&WriteSet {
            durable: true,
            ..Default::default()
        })?;
        meta.state = SnapshotState::Complete;
        meta.completed_at_ms = Some(now_ms());
        self.store.put_snapshot_meta(&meta, true)?;
        self.activate(version)?;
        self.collect_garbage(version)?;
        Ok(meta)
    }

    /// Deletes everything a failed load wrote: its dead letters first (they describe a version
    /// that never existed, and hold the input's lines), then its baseline and metadata, so that
    /// once the version is gone from the list nothing of it is left. Should the process die in
    /// between, the version is still `loading` and [`Snapshots::open`] finishes the job.
    fn discard_failed(&self, version: u64) -> Result<(), StoreError> {
        let removed = self.store.remove_snapshot_dead_letters(version)?;
        self.metrics
            .dead_letters_stored
            .set(self.store.dead_letter_count() as i64);
        tracing::info!(version, removed, "removed the failed load's dead letters");
        self.store.discard_snapshot(version)
    }

    fn flush(
        &self,
        layer: Layer,
        staged: &mut Vec<(EntityKey, Entity)>,
        set: &mut WriteSet,
    ) -> Result<(), SnapshotError> {
        set.entities = staged.drain(..).map(|(k, e)| (layer, k, e)).collect();
        self.store.commit(set)?;
        *set = WriteSet::default();
        Ok(())
    }

    /// Referential integrity inside the new baseline: prices, inventory and fulfillment need
    /// their product; products need their brand and category when they name one.
    fn check_references(
        &self,
        version: u64,
        update: &crate::model::Update,
    ) -> Result<(), RecordError> {
        let layer = Layer::Baseline(version);
        let class = update.key.class;
        let mut refs: Vec<(Class, &str, &str)> = Vec::new();
        match class {
            Class::Pricing | Class::Inventory | Class::Fulfillment => {
                refs.push((Class::Product, update.key.id.as_str(), "key.product_id"));
            }
            Class::Product => {
                for (field, target) in
                    [("brand_id", Class::Brand), ("category_id", Class::Category)]
                {
                    if let Some(serde_json::Value::String(id)) = update.payload.get(field) {
                        refs.push((
                            target,
                            id.as_str(),
                            if target == Class::Brand {
                                "payload.brand_id"
                            } else {
                                "payload.category_id"
                            },
                        ));
                    }
                }
            }
            _ => {}
        }
        for (target, id, field) in refs {
            let key = EntityKey {
                class: target,
                id: id.to_owned(),
                sub: None,
            };
            let found = self.store.get(layer, &key).map_err(|e| RecordError {
                field: field.into(),
                message: e.to_string(),
                class: Some(class),
            })?;
            if found.is_none() {
                return Err(RecordError {
                    field: field.into(),
                    message: format!("refers to {target} {id:?}, which is not in the snapshot"),
                    class: Some(class),
                });
            }
        }
        Ok(())
    }

    fn activate(&self, version: u64) -> Result<(), StoreError> {
        self.active.store(version, Ordering::Release);
        self.feed.publish(&[ChangeEvent::All]);
        self.publish_metrics()
    }

    /// Keeps the active version and the newest complete one below it (the rollback target).
    fn collect_garbage(&self, active: u64) -> Result<(), StoreError> {
        let metas = self.store.snapshots()?;
        let previous = previous_complete(&metas, active);
        for m in metas {
            if m.version != active
                && Some(m.version) != previous
                && m.state == SnapshotState::Complete
            {
                self.store.discard_snapshot(m.version)?;
            }
        }
        Ok(())
    }

    /// Makes the previous complete version active again.
    pub fn rollback(&self) -> Result<u64, SnapshotError> {
        if let Some(v) = *self.loading.lock() {
            return Err(SnapshotError::Busy(v));
        }
        let target = previous_complete(&self.store.snapshots()?, self.active())
            .ok_or(SnapshotError::NoPrevious)?;
        self.store.set_active_snapshot(target)?;
        self.activate(target)?;
        Ok(target)
    }

    fn publish_metrics(&self) -> Result<(), StoreError> {
        let active = self.active();
        self.metrics.snapshot_version.set(active as i64);
        let completed = self
            .store
            .snapshots()?
            .into_iter()
            .find(|m| m.version == active)
            .and_then(|m| m.completed_at_ms)
            .unwrap_or(0);
        self.metrics.snapshot_timestamp.set(completed / 1000);
        Ok(())
    }
}

/// Serve workers of a distributed pipeline learn of a snapshot switch made by an ingest worker
/// through the change feed's `All` event and re-read the pointer row. Subscribed before the
/// caches, so they are invalidated only once reads already use the new version.
impl Invalidate for Snapshots {
    fn invalidate(&self, events: &[ChangeEvent]) {
        if !events.iter().any(|e| matches!(e, ChangeEvent::All)) {
            return;
        }
        match self.store.active_snapshot() {
            Ok(version) => {
                let version = version.unwrap_or(0);
                if self.active.swap(version, Ordering::AcqRel) != version {
                    tracing::info!(version, "active snapshot switched by another worker");
                }
                if let Err(e) = self.publish_metrics() {
                    tracing::warn!(error = %e, "reading snapshot metadata failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "re-reading the active snapshot failed"),
        }
    }
}

fn previous_complete(metas: &[SnapshotMeta], active: u64) -> Option<u64> {
    metas
        .iter()
        .filter(|m| m.state == SnapshotState::Complete && m.version < active)
        .map(|m| m.version)
        .max()
}

fn dead_letter(
    e: &RecordError,
    line: &[u8],
    version: u64,
    as_of_ms: i64,
    line_no: u64,
) -> DeadLetter {
    DeadLetter {
        received_at_ms: now_ms(),
        source: DeadLetterSource::Snapshot {
            version,
            as_of_ms,
            line: line_no,
        },
        class: e.class,
        field: e.field.clone(),
        reason: e.message.clone(),
        raw: lossy(line),
    }
}

/// A raw record as text for the dead-letter store, truncated to a bounded size.
pub fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(&raw[..raw.len().min(MAX_DEAD_LETTER_RAW)]).into_owned()
}

/// Calls `f(line_number, bytes)` for every non-blank line of `input` from its start; lines need
/// not be UTF-8. `path` is for messages only: the file is never reopened by name.
fn for_each_line(
    path: &Path,
    input: &File,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    let io = |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    };
    let mut handle = input.try_clone().map_err(io)?;
    handle.rewind().map_err(io)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, handle);
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(io)? == 0 {
            return Ok(());
        }
        line_no += 1;
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.iter().all(u8::is_ascii_whitespace) {
            f(line_no, line)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::InProcessFeed;
    use crate::store::embedded::EmbeddedStore;

    /// A serve worker's lifecycle re-reads the pointer row on an `All` event, as it must when an
    /// ingest worker of the same distributed pipeline switches the version, and ignores
    /// entity-only events.
    #[test]
    fn an_all_event_rereads_the_active_version() {
        let dir = std::env::temp_dir().join(format!("tw-snap-{}", fastrand::u64(..)));
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir, 1 << 20).unwrap());
        let open = || {
            Snapshots::open(
                store.clone(),
                Arc::new(InProcessFeed::default()),
                Arc::new(Metrics::default()),
                InterruptedLoads::Keep,
            )
            .unwrap()
        };
        let serve = open();
        assert_eq!(serve.active(), 0);
        for version in [1, 2] {
            let meta = SnapshotMeta {
                version,
                state: SnapshotState::Complete,
                as_of_ms: 1,
                completed_at_ms: Some(2),
                records: 0,
                rejected: 0,
            };
            store.put_snapshot_meta(&meta, true).unwrap();
        }
        let key = EntityKey {
            class: Class::Product,
            id: "p1".into(),
            sub: None,
        };
        serve.invalidate(&[ChangeEvent::Entity(key)]);
        assert_eq!(
            serve.active(),
            0,
            "an entity event leaves the pointer alone"
        );
        serve.invalidate(&[ChangeEvent::All]);
        assert_eq!(serve.active(), 2);
        store.set_active_snapshot(1).unwrap();
        serve.invalidate(&[ChangeEvent::All]);
        assert_eq!(serve.active(), 1, "a rollback elsewhere is seen too");
        drop(serve);
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The rules of `?path=` on a real directory tree, reached through a symlinked import dir
    /// (as `/tmp` is on some systems, or a volume mount may be).
    #[test]
    fn import_paths_resolve_inside_the_directory_only() {
        let root = std::env::temp_dir().join(format!("tw-import-{}", fastrand::u64(..)));
        let real = root.join("real");
        let outside = root.join("outside");
        std::fs::create_dir_all(real.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(real.join("a.ndjson"), "{}\n").unwrap();
        std::fs::write(outside.join("secret"), "s3cret\n").unwrap();
        std::os::unix::fs::symlink(&real, root.join("alias")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), real.join("out.ndjson")).unwrap();
        std::os::unix::fs::symlink(real.join("a.ndjson"), real.join("in.ndjson")).unwrap();
        let dir = ImportDir::resolve(&root.join("alias")).unwrap();
        let open = |p: &str| open_import(Some(&dir), p).map(|(path, _)| path);

        let inside = real.canonicalize().unwrap().join("a.ndjson");
        for ok in [
            "a.ndjson".to_owned(),
            "./a.ndjson".to_owned(),
            root.join("alias/a.ndjson").display().to_string(),
            real.join("a.ndjson").display().to_string(),
            "in.ndjson".to_owned(),
        ] {
            assert_eq!(open(&ok).unwrap(), inside, "{ok}");
        }
        for outside_path in [
            "out.ndjson".to_owned(),
            outside.join("secret").display().to_string(),
            "/etc/passwd".to_owned(),
            // Refused the same way whether or not it exists: no probing outside the directory.
            outside.join("absent").display().to_string(),
        ] {
            assert!(
                matches!(open(&outside_path), Err(ImportError::Outside(_))),
                "{outside_path}"
            );
        }
        for dotdot in ["../outside/secret", "sub/../a.ndjson"] {
            assert!(
                matches!(open(dotdot), Err(ImportError::ParentComponent)),
                "{dotdot}"
            );
        }
        for unreadable in ["absent.ndjson", "sub", ""] {
            assert!(
                matches!(open(unreadable), Err(ImportError::Unreadable(_))),
                "{unreadable:?}"
            );
        }
        assert!(matches!(
            open_import(None, "a.ndjson"),
            Err(ImportError::Disabled)
        ));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
