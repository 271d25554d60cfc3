//! `scripts/build-images.sh`: two builds of the same binaries give byte-identical OCI archives, and
//! the data-plane image holds everything its binary needs: it runs from the image's own files
//! (chroot into the unpacked layer) as the image's user, 65532. The archives import into a real
//! containerd (Debian's, started here on a private socket), whose runc runs the binary; skopeo
//! pushes them to a real registry on loopback (Debian's docker-registry) and pulls them back with
//! the same digest. Packages the debug binaries that `cargo build --workspace` leaves, so no
//! release build is needed here. `tests/images/install.sh` installs the tools.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tailwarden_tests::run;

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

/// The manifest digest an OCI archive's index names.
fn manifest_digest(archive: &Path, scratch: &Path) -> String {
    let dir = scratch.join("index");
    std::fs::create_dir_all(&dir).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(&dir)
        .arg("index.json"));
    json(&dir.join("index.json"))["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A child process killed (and its directory removed) on drop.
struct Server(Child, PathBuf);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn untar(archive: &Path, into: &Path, gzip: bool) {
    std::fs::create_dir_all(into).unwrap();
    let flags = if gzip { "-xzf" } else { "-xf" };
    run(Command::new("tar")
        .arg(flags)
        .arg(archive)
        .arg("-C")
        .arg(into));
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

#[tokio::test]
#[ignore = "needs the workspace's binaries, root, containerd, skopeo and docker-registry: run tests/run.sh"]
async fn images_import_into_containerd_run_and_round_trip_a_registry() {
    let base = std::env::temp_dir().join(format!("tailwarden-images-ctr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let archives = base.join("archives");
    build(&archives);
    let archive = |name: &str| archives.join(format!("{name}-0.1.0.oci.tar"));

    // containerd on a private socket, all its state in the test's directory.
    let ctd = base.join("containerd");
    std::fs::create_dir_all(&ctd).unwrap();
    let socket = ctd.join("sock");
    std::fs::write(
        ctd.join("config.toml"),
        format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n[grpc]\n  address = \"{1}\"\n",
            ctd.display(),
            socket.display()
        ),
    )
    .unwrap();
    let _containerd = Server(
        Command::new("containerd")
            .arg("--config")
            .arg(ctd.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("containerd starts (tests/images/install.sh)"),
        ctd.clone(),
    );
    let ctr = || {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&socket);
        c
    };
    tailwarden_tests::wait_for("containerd to answer", Duration::from_secs(30), || async {
        ctr()
            .arg("version")
            .output()
            .ok()?
            .status
            .success()
            .then_some(())
    })
    .await;
    for name in ["tailwarden-operator", "tailwarden-dataplane"] {
        run(ctr().args(["images", "import"]).arg(archive(name)));
        let listed = run(ctr().args(["images", "ls"]));
        let digest = manifest_digest(&archive(name), &base.join(name));
        let line = listed
            .lines()
            .find(|l| l.starts_with(&format!("docker.io/tailwarden/{name}:0.1.0 ")))
            .unwrap_or_else(|| panic!("{name} imported: {listed}"));
        assert!(line.contains(&digest), "{line} has {digest}");
        let out = run(ctr().args([
            "run",
            "--rm",
            &format!("docker.io/tailwarden/{name}:0.1.0"),
            &format!("version-{name}"),
            &format!("/usr/local/bin/{name}"),
            "--version",
        ]));
        assert!(out.starts_with(&format!("{name} 0.1.0")), "{out}");
    }

    // A registry on loopback: push, read the manifest digest back, pull into a new archive.
    let port = tailwarden_tests::free_port();
    let reg = base.join("registry");
    std::fs::create_dir_all(&reg).unwrap();
    std::fs::write(
        reg.join("config.yml"),
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}/data\nhttp:\n  addr: 127.0.0.1:{port}\n",
            reg.display()
        ),
    )
    .unwrap();
    let _registry = Server(
        Command::new("docker-registry")
            .arg("serve")
            .arg(reg.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts (tests/images/install.sh)"),
        reg.clone(),
    );
    let v2 = format!("http://127.0.0.1:{port}/v2/");
    tailwarden_tests::wait_for_ok("the registry to answer", &v2, Duration::from_secs(30)).await;
    let name = "tailwarden-dataplane";
    let remote = format!("docker://127.0.0.1:{port}/tailwarden/{name}:0.1.0");
    run(Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci-archive:{}", archive(name).display()))
        .arg(&remote));
    let digest = manifest_digest(&archive(name), &base.join("pushed"));
    let inspected: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(&remote)))
    .unwrap();
    assert_eq!(
        inspected["Digest"],
        digest.as_str(),
        "the registry holds our manifest"
    );
    // The same archive read as a docker archive (what `docker load` reads), by the name it tags.
    let as_docker: serde_json::Value =
        serde_json::from_str(&run(Command::new("skopeo").arg("inspect").arg(format!(
            "docker-archive:{}:docker.io/tailwarden/{name}:0.1.0",
            archive(name).display()
        ))))
        .unwrap();
    assert_eq!(as_docker["Labels"], inspected["Labels"], "{as_docker}");
    assert_eq!(as_docker["Env"], inspected["Env"], "{as_docker}");
    let back = base.join("back.oci.tar");
    run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(&remote)
        .arg(format!("oci-archive:{}", back.display())));
    assert_eq!(manifest_digest(&back, &base.join("pulled")), digest);
    drop(_registry);
    drop(_containerd);
    let _ = std::fs::remove_dir_all(&base);
}
