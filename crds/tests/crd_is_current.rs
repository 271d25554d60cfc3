//! The committed CRD YAML must be exactly what `crdgen` writes, so the cluster never runs a stale schema.

#[test]
fn committed_crd_yaml_matches_the_rust_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(tailwarden_crds::CRD_FILE);
    let committed = std::fs::read_to_string(&path).expect("crds/ holds the generated CRD");
    assert!(
        committed == tailwarden_crds::crd_yaml(),
        "{} is stale: run `cargo run -p tailwarden-crds --bin crdgen` and commit the result",
        path.display()
    );
}
