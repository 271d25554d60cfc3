//! The raw store limit (issue #12): the write sets that the load generator's records give the
//! writer, committed straight to fjall, one write batch with `fdatasync` per group commit of
//! `--batch` records, as the writer commits them; no HTTP, parsing, dedup, reads or merging
//! inside the timed loop. The write path's rate divided by this one is its efficiency.
//!
//! The records are `tailwarden-loadgen run`'s (`workload`: same class mix, Zipf(1.0) over
//! `--keys` products), parsed and coalesced per batch beforehand; each batch writes one state per
//! key and one dedup entry. With `--threads N`, N threads commit the batches of the products of
//! `hash(product_id) % N` each, as `--writer-threads N` does. Compare with `bench/run-benchmarks.sh
//! a` (loadgen against a standalone worker with `ingest.batch.maxRecords: 20000`):
//!
//! ```sh
//! cargo run --release -p tailwarden-dataplane --example raw_store_bench -- --records 1000000
//! ```

/// mimalloc, as the data-plane binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use tailwarden_dataplane::merge::coalesce;
use tailwarden_dataplane::model::{Class, Update, now_ms, partition_of};
use tailwarden_dataplane::schema::{Mode, parse_record};
use tailwarden_dataplane::workload::{Zipf, product_id, write_update};

#[derive(Parser)]
#[command(about = "Commits the load generator's write sets straight to fjall")]
struct Args {
    /// Updates to commit.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Updates per group commit (`ingest.batch.maxRecords`).
    #[arg(long, default_value_t = 20_000)]
    batch: usize,
    /// Products, Zipf(1.0) (loadgen's `--keys`).
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Locations per product (loadgen's `--locations`).
    #[arg(long, default_value_t = 2)]
    locations: u64,
    /// Committing threads, each with its own products (`--writer-threads`).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The store directory; a fresh one under the temp dir (removed afterwards) by default.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// One group commit's writes: (class, stored key, value), and the dedup entry's value.
struct WriteSet {
    entities: Vec<(Class, Vec<u8>, Vec<u8>)>,
    dedup: Vec<u8>,
}

/// The write set a writer commits for `updates`: each key's coalesced state, as the embedded
/// store encodes it, and the batch's event-id hashes.
fn write_set(updates: &[Update]) -> anyhow::Result<WriteSet> {
    let (states, _) = coalesce(updates, |_| Default::default());
    let entities = states
        .iter()
        .map(|(key, entity)| Ok((key.class, key.to_bytes(), serde_json::to_vec(entity)?)))
        .collect::<anyhow::Result<_>>()?;
    let dedup = updates
        .iter()
        .flat_map(|u| u.version.event_hash.to_le_bytes())
        .collect();
    Ok(WriteSet { entities, dedup })
}

/// The write sets of `args.records` loadgen records, by committing thread.
fn prepare(args: &Args) -> anyhow::Result<Vec<Vec<WriteSet>>> {
    let zipf = Zipf::new(args.keys.max(1), 1.0);
    let mut rng = fastrand::Rng::with_seed(12);
    let threads = args.threads.max(1);
    let now = now_ms();
    let mut pending: Vec<Vec<Update>> = (0..threads).map(|_| Vec::new()).collect();
    let mut sets: Vec<Vec<WriteSet>> = (0..threads).map(|_| Vec::new()).collect();
    let mut line = String::new();
    for seq in 0..args.records {
        line.clear();
        let id = product_id(zipf.sample(&mut rng));
        let event_id = format!("raw-{seq}");
        write_update(
            &mut line,
            &mut rng,
            &id,
            args.locations,
            &event_id,
            seq,
            now,
        );
        let update = parse_record(line.trim_end().as_bytes(), Mode::Stream)
            .map_err(|e| anyhow::anyhow!("a generated record is invalid: {e:?}"))?
            .update;
        let thread = partition_of(&update.key.id, threads as u32) as usize;
        pending[thread].push(update);
        if pending[thread].len() == args.batch.max(1) {
            sets[thread].push(write_set(&std::mem::take(&mut pending[thread]))?);
        }
    }
    for (thread, rest) in pending.into_iter().enumerate() {
        if !rest.is_empty() {
            sets[thread].push(write_set(&rest)?);
        }
    }
    Ok(sets)
}

/// Commits `sets` in order, each one fjall batch synced with `fdatasync`.
fn commit_all(
    db: &Database,
    stream: &[(Class, Keyspace)],
    dedup: &Keyspace,
    sets: Vec<WriteSet>,
    first_id: u64,
) -> anyhow::Result<()> {
    for (n, set) in sets.into_iter().enumerate() {
        let mut batch = db.batch();
        for (class, key, value) in set.entities {
            let ks = stream
                .iter()
                .find_map(|(c, ks)| (*c == class).then_some(ks))
                .context("every class has a keyspace")?;
            batch.insert(ks, key, value);
        }
        batch.insert(dedup, (first_id + n as u64).to_be_bytes(), set.dedup);
        batch.durability(Some(PersistMode::SyncData)).commit()?;
    }
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sets = prepare(&args)?;
    let commits: usize = sets.iter().map(Vec::len).sum();
    let writes: usize = sets.iter().flatten().map(|s| s.entities.len() + 1).sum();
    let temp = args.dir.is_none();
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("tailwarden-raw-store-{}", fastrand::u64(..)))
    });
    // As the embedded store opens it (the data plane's default block cache, fjall's smallest
    // journal cap).
    let db = Database::builder(&dir)
        .cache_size(256 << 20)
        .max_journaling_size(64 << 20)
        .open()?;
    let stream: Vec<(Class, Keyspace)> = Class::ALL
        .into_iter()
        .map(|c| {
            Ok((
                c,
                db.keyspace(&format!("stream.{c}"), KeyspaceCreateOptions::default)?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let dedup = db.keyspace("dedup", KeyspaceCreateOptions::default)?;

    eprint!("load average before: {}", load_average());
    let started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let running: Vec<_> = sets
            .into_iter()
            .enumerate()
            .map(|(thread, sets)| {
                let (db, stream, dedup) = (&db, &stream, &dedup);
                // Dedup entry ids of different threads never collide.
                let first_id = (thread as u64) << 40;
                scope.spawn(move || commit_all(db, stream, dedup, sets, first_id))
            })
            .collect();
        for thread in running {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("a commit thread panicked"))??;
        }
        Ok(())
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    eprint!("load average after: {}", load_average());
    println!(
        "raw store: {} updates in {commits} commits of <= {} records ({writes} key writes), {} thread(s), {elapsed:.2} s: {:.0} updates/s, {:.1} ms per commit",
        args.records,
        args.batch,
        args.threads.max(1),
        args.records as f64 / elapsed,
        elapsed * 1000.0 * args.threads.max(1) as f64 / commits.max(1) as f64,
    );
    drop(dedup);
    drop(stream);
    drop(db);
    if temp {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
