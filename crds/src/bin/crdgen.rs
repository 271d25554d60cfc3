//! Writes the CRD YAML into `crds/` (or prints it with `--stdout`).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let yaml = tailwarden_crds::crd_yaml();
    if std::env::args().any(|a| a == "--stdout") {
        print!("{yaml}");
        return Ok(());
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(tailwarden_crds::CRD_FILE);
    std::fs::write(&path, yaml)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
