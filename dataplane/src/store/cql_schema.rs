//! The keyspace's tables and their creation (an idempotent migration run at connect).
//!
//! Entity tables follow the paper's Table 4.3: one table per class, partitioned by the class's
//! id, with the second key field (`valid_from`, `location`, `region`) as clustering column, so
//! every read stays inside one partition. The `layer` (stream `-1`, or a baseline's snapshot
//! version) is part of the partition key: baselines of different versions never mix, and
//! `baseline_partitions` lists the partitions of each version so that discarding a version
//! deletes exactly those, in time proportional to the version's size.

use scylla::client::session::Session;

use super::cql_errors::CqlError;
use crate::model::Class;

/// Buckets of `baseline_partitions` per version, so that no index partition grows unbounded.
pub(crate) const INDEX_BUCKETS: u32 = 16;

/// Options of the one-partition queues (dedup window, dead letters, deferred updates), whose
/// rows are deleted from the old end and read from there: tombstones are purged after an hour
/// rather than ten days, so reads do not wade through (or fail on) weeks of them. A replica that
/// missed a delete for longer may resurrect the row: a listed dead letter again, a deferred
/// update applied twice or an event id remembered again, all harmless under last-writer-wins.
const QUEUE_OPTIONS: &str = "gc_grace_seconds = 3600";

/// The table of a class.
pub(crate) fn table(class: Class) -> &'static str {
    class.as_str()
}

/// The partition-key column of a class (besides `layer`).
pub(crate) fn id_column(class: Class) -> &'static str {
    class.key_fields()[0]
}

/// The clustering column of a class and its CQL type, if it has one.
pub(crate) fn sub_column(class: Class) -> Option<(&'static str, &'static str)> {
    let name = *class.key_fields().get(1)?;
    Some((
        name,
        if class == Class::Pricing {
            "bigint"
        } else {
            "text"
        },
    ))
}

/// True for names that are safe to splice into CQL unquoted (Cassandra's own rule for keyspace
/// names, lowercase only so that no quoting is ever needed).
pub(crate) fn valid_keyspace(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with('_')
}

/// Every table, as `CREATE TABLE IF NOT EXISTS` statements.
pub(crate) fn create_tables(ks: &str) -> Vec<String> {
    let mut out = Vec::new();
    for class in Class::ALL {
        let id = id_column(class);
        let t = table(class);
        out.push(match sub_column(class) {
            None => format!(
                "CREATE TABLE IF NOT EXISTS {ks}.{t} (layer bigint, {id} text, \
                 fields map<text, blob>, PRIMARY KEY ((layer, {id})))"
            ),
            Some((sub, ty)) => format!(
                "CREATE TABLE IF NOT EXISTS {ks}.{t} (layer bigint, {id} text, {sub} {ty}, \
                 fields map<text, blob>, PRIMARY KEY ((layer, {id}), {sub})) \
                 WITH CLUSTERING ORDER BY ({sub} DESC)"
            ),
        });
    }
    out.extend([
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.baseline_partitions (version bigint, bucket int, \
             class text, id text, PRIMARY KEY ((version, bucket), class, id))"
        ),
        // One partition: the window is small (it is trimmed to the configured size).
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.dedup (p int, id bigint, instance bigint, \
             hashes blob, PRIMARY KEY (p, id, instance)) \
             WITH CLUSTERING ORDER BY (id DESC, instance ASC) AND {QUEUE_OPTIONS}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.dead_letters (p int, id bigint, \
             snapshot_version bigint, value blob, PRIMARY KEY (p, id)) WITH {QUEUE_OPTIONS}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.deferred (p int, id bigint, value blob, \
             PRIMARY KEY (p, id)) WITH {QUEUE_OPTIONS}"
        ),
        format!("CREATE TABLE IF NOT EXISTS {ks}.counts (name text PRIMARY KEY, n counter)"),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.snapshots (p int, version bigint, meta blob, \
             PRIMARY KEY (p, version))"
        ),
        format!("CREATE TABLE IF NOT EXISTS {ks}.pointers (name text PRIMARY KEY, version bigint)"),
    ]);
    out
}

/// Creates the keyspace if absent, then every table. The keyspace created here is
/// `SimpleStrategy` with one replica, fit for tests and a single node only: production creates
/// its own keyspace (`NetworkTopologyStrategy`, RF 3) beforehand, and this leaves it untouched.
pub(crate) async fn migrate(session: &Session, ks: &str) -> Result<(), CqlError> {
    let keyspace = format!(
        "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
         {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
    );
    for cql in std::iter::once(keyspace).chain(create_tables(ks)) {
        session.query_unpaged(cql, ()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_names_are_checked() {
        assert!(valid_keyspace("tailwarden_prod1"));
        for bad in ["", "_x", "a-b", "Caps", "a;DROP", &"x".repeat(49)] {
            assert!(!valid_keyspace(bad), "{bad:?}");
        }
    }

    #[test]
    fn tables_are_keyed_as_in_table_4_3() {
        let cql = create_tables("ks").join("\n");
        assert!(cql.contains("PRIMARY KEY ((layer, product_id), valid_from)"));
        assert!(cql.contains("PRIMARY KEY ((layer, product_id), location)"));
        assert!(cql.contains("PRIMARY KEY ((layer, product_id), region)"));
        assert!(cql.contains("PRIMARY KEY ((layer, category_id)))"));
    }
}
