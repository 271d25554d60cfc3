"""Writes a reproducible OCI image archive holding one binary, the shared libraries it loads
(as ldd resolves them here; none for a static binary), CA certificates, and /etc/passwd and
/etc/group with the non-root user 65532. Entries sorted, owners and times fixed, gzip without a
timestamp: the same inputs give the same digests. Used by scripts/build-images.sh and by the test
node's pause image (tests/cluster/node-up.sh).

Usage: oci_image.py BINARY NAME VERSION REVISION EPOCH OUT-DIR
Writes OUT-DIR/NAME-VERSION.oci.tar, named docker.io/tailwarden/NAME:VERSION for
`ctr images import`, and prints its manifest digest and size.
"""
import gzip, hashlib, io, json, os, subprocess, sys, tarfile

binary, name, version, revision, epoch, out = sys.argv[1:]
epoch = int(epoch)

def libraries(path):
    """The shared objects `path` loads, as ldd resolves them on this machine (none if static)."""
    libs = set()
    ldd = subprocess.run(["ldd", path], capture_output=True, text=True)
    if "not a dynamic executable" in ldd.stdout + ldd.stderr:
        return []
    ldd.check_returncode()
    for line in ldd.stdout.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            libs.add(parts[2])
        elif parts and parts[0].startswith("/"):
            libs.add(parts[0])  # the dynamic loader
    return sorted(libs)

def stripped(path):
    """The binary without debug info (the release profile keeps line tables for profiling)."""
    tmp = os.path.join(out, f".{name}.stripped")
    subprocess.run(["strip", "--strip-debug", "-o", tmp, path], check=True)
    data = open(tmp, "rb").read()
    os.remove(tmp)
    return data

files = {f"usr/local/bin/{name}": (stripped(binary), 0o755)}
for lib in libraries(binary):
    files[lib.lstrip("/")] = (open(os.path.realpath(lib), "rb").read(), 0o755)
files["etc/ssl/certs/ca-certificates.crt"] = (open("/etc/ssl/certs/ca-certificates.crt", "rb").read(), 0o644)
files["etc/passwd"] = (b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n", 0o644)
files["etc/group"] = (b"root:x:0:\nnonroot:x:65532:\n", 0o644)
dirs = {"tmp": 0o1777, "home/nonroot": 0o755}
for path in list(files) + list(dirs):
    parent = os.path.dirname(path)
    while parent:
        dirs.setdefault(parent, 0o755)
        parent = os.path.dirname(parent)

def entry(path, mode, kind):
    info = tarfile.TarInfo(path)
    info.mode, info.mtime, info.type = mode, epoch, kind
    info.uid = info.gid = 65532 if path == "home/nonroot" else 0
    info.uname = info.gname = ""
    return info

raw = io.BytesIO()
with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
    for path in sorted(set(dirs) | set(files)):
        if path in files:
            data, mode = files[path]
            info = entry(path, mode, tarfile.REGTYPE)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        else:
            tar.addfile(entry(path + "/", dirs[path], tarfile.DIRTYPE))
layer_tar = raw.getvalue()
compressed = io.BytesIO()
with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, compresslevel=9) as gz:
    gz.write(layer_tar)
layer = compressed.getvalue()

def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()

created = __import__("datetime").datetime.fromtimestamp(epoch, __import__("datetime").timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
labels = {
    "org.opencontainers.image.title": name,
    "org.opencontainers.image.version": version,
    "org.opencontainers.image.revision": revision,
    "org.opencontainers.image.source": "https://github.com/tailwarden/tailwarden",
    "org.opencontainers.image.licenses": "Apache-2.0",
    "org.opencontainers.image.created": created,
}
config = json.dumps({
    "created": created,
    "architecture": "amd64",
    "os": "linux",
    "config": {
        "User": "65532:65532",
        "Entrypoint": [f"/usr/local/bin/{name}"],
        "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
        "WorkingDir": "/",
        "Labels": labels,
    },
    "rootfs": {"type": "layers", "diff_ids": [sha(layer_tar)]},
    "history": [{"created": created, "created_by": "scripts/build-images.sh"}],
}, sort_keys=True, separators=(",", ":")).encode()
manifest = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(layer), "size": len(layer)}],
    "annotations": labels,
}, sort_keys=True, separators=(",", ":")).encode()
ref = f"{name}:{version}"
index = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha(manifest),
        "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": version, "io.containerd.image.name": f"docker.io/tailwarden/{ref}"},
    }],
}, sort_keys=True, separators=(",", ":")).encode()

archive = os.path.join(out, f"{name}-{version}.oci.tar")
with tarfile.open(archive, mode="w", format=tarfile.PAX_FORMAT) as tar:
    members = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": index,
        f"blobs/sha256/{sha(config)[7:]}": config,
        f"blobs/sha256/{sha(manifest)[7:]}": manifest,
        f"blobs/sha256/{sha(layer)[7:]}": layer,
        # The docker-archive index (as `docker save` writes beside the OCI layout), so that
        # `docker load` and skopeo's docker-archive: transport read the same archive.
        "manifest.json": json.dumps([{
            "Config": f"blobs/sha256/{sha(config)[7:]}",
            "RepoTags": [f"docker.io/tailwarden/{ref}"],
            "Layers": [f"blobs/sha256/{sha(layer)[7:]}"],
        }], separators=(",", ":")).encode(),
    }
    for d in ["blobs/", "blobs/sha256/"]:
        tar.addfile(entry(d, 0o755, tarfile.DIRTYPE))
    for path in sorted(members):
        info = entry(path, 0o644, tarfile.REGTYPE)
        info.size = len(members[path])
        tar.addfile(info, io.BytesIO(members[path]))
print(f"{archive} manifest {sha(manifest)} layer {len(layer_tar) / 1e6:.1f} MB uncompressed, {len(layer) / 1e6:.1f} MB compressed")
