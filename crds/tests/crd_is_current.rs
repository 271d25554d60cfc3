//! The committed CRD YAML must be exactly what `crdgen` writes, so the cluster never runs a stale
//! schema: both the copy in `crds/` and the Helm chart's copy in `charts/tailwarden/crds/`.

use std::path::{Path, PathBuf};

fn check(path: PathBuf) {
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} holds the generated CRD: {e}", path.display()));
    assert!(
        committed == tailwarden_crds::crd_yaml(),
        "{} is stale: run `cargo run -p tailwarden-crds --bin crdgen` and commit the result",
        path.display()
    );
}

#[test]
fn committed_crd_yaml_matches_the_rust_types() {
    check(Path::new(env!("CARGO_MANIFEST_DIR")).join(tailwarden_crds::CRD_FILE));
}

#[test]
fn the_helm_chart_ships_the_same_crd() {
    check(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../charts/tailwarden/crds")
            .join(tailwarden_crds::CRD_FILE),
    );
}
