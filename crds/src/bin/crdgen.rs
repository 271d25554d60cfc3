//! Writes the CRD YAML into `crds/` and into the Helm chart's `charts/tailwarden/crds/` (or prints
//! it with `--stdout`).

use std::path::PathBuf;

/// The Helm chart's CRD directory, relative to the workspace root (Helm installs `crds/` first).
const CHART_CRD_DIR: &str = "charts/tailwarden/crds";

fn main() -> std::io::Result<()> {
    let yaml = tailwarden_crds::crd_yaml();
    if std::env::args().any(|a| a == "--stdout") {
        print!("{yaml}");
        return Ok(());
    }
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for dir in [
        crate_dir.clone(),
        crate_dir
            .parent()
            .expect("crds/ is inside the workspace")
            .join(CHART_CRD_DIR),
    ] {
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(tailwarden_crds::CRD_FILE);
        std::fs::write(&path, &yaml)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
