//! `scripts/build-images.sh`: two builds of the same binaries give byte-identical OCI archives, and
//! the data-plane image holds everything its binary needs: it runs from the image's own files
//! (chroot into the unpacked layer) as the image's user, 65532. Packages the debug binaries that
//! `cargo build --workspace` leaves, so no release build is needed here.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn build(out: &Path) {
    let target = tailwarden_tests::dataplane_bin()
        .parent()
        .and_then(Path::parent)
        .expect("the target directory")
        .to_owned();
    let status = Command::new(root().join("scripts/build-images.sh"))
        .arg(out)
        .env("SKIP_BUILD", "1")
        .env("PROFILE", "debug")
        .env("CARGO_TARGET_DIR", target)
        .status()
        .expect("the script runs");
    assert!(status.success(), "build-images.sh failed: {status}");
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn untar(archive: &Path, into: &Path, gzip: bool) {
    std::fs::create_dir_all(into).unwrap();
    let flags = if gzip { "-xzf" } else { "-xf" };
    let status = Command::new("tar")
        .arg(flags)
        .arg(archive)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
#[ignore = "needs the workspace's binaries and root for chroot: run tests/run.sh"]
fn images_are_reproducible_and_their_binaries_run_as_non_root() {
    let base = std::env::temp_dir().join(format!("tailwarden-images-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (one, two) = (base.join("one"), base.join("two"));
    build(&one);
    build(&two);
    for name in ["tailwarden-operator", "tailwarden-dataplane"] {
        let file = format!("{name}-0.1.0.oci.tar");
        let (a, b) = (
            std::fs::read(one.join(&file)).unwrap(),
            std::fs::read(two.join(&file)).unwrap(),
        );
        assert!(
            a == b,
            "{file} differs between two builds of the same binaries"
        );
    }

    let layout = base.join("layout");
    untar(
        &one.join("tailwarden-dataplane-0.1.0.oci.tar"),
        &layout,
        false,
    );
    let index = json(&layout.join("index.json"));
    let blob = |digest: &serde_json::Value| {
        layout
            .join("blobs/sha256")
            .join(&digest.as_str().unwrap()["sha256:".len()..])
    };
    let manifest = json(&blob(&index["manifests"][0]["digest"]));
    let config = json(&blob(&manifest["config"]["digest"]));
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.licenses"],
        "Apache-2.0"
    );
    let rootfs = base.join("rootfs");
    untar(&blob(&manifest["layers"][0]["digest"]), &rootfs, true);
    assert!(
        std::fs::read_to_string(rootfs.join("etc/passwd"))
            .unwrap()
            .contains(":65532:65532:")
    );
    let out = Command::new("chroot")
        .arg("--userspec=65532:65532")
        .arg(&rootfs)
        .args(["/usr/local/bin/tailwarden-dataplane", "--version"])
        .output()
        .expect("chroot runs (the suite runs as root)");
    assert!(
        out.status.success(),
        "the binary does not run from the image's files: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("tailwarden-dataplane "));
    let _ = std::fs::remove_dir_all(&base);
}
