"""The image store with real archives (skopeo, umoci), real builds (runc for RUN), overlay root
filesystems and the bundled book images served by busybox httpd inside network namespaces the
tests create (traffic stays on their loopback)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from ketch.images import bundled
from ketch.images.archive import load
from ketch.images.build import DEFAULT_PATH, build, run_spec
from ketch.images.errors import BuildError
from ketch.images.store import ImageStore
from ketch.images.store import canonical_json

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="overlay mounts, runc and netns need root")
KETCH = [sys.executable, "-m", "ketch.cli.main"]


@pytest.fixture
def store(tmp_path) -> ImageStore:
    s = ImageStore(tmp_path / "data" / "images")
    yield s
    assert not _mounts_under(s.root), "a test left a mount in the store"


def _mounts_under(root: Path) -> list[str]:
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(str(root))]


def ketch_image(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*KETCH, "image", args[0], "--data-dir", str(data_dir), *args[1:]],
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


class Container:
    """One runc container on an image's overlay root, in a network namespace of its own (lo up);
    everything it creates goes in stop()."""

    def __init__(self, store: ImageStore, image, tmp: Path, args: list[str] | None = None,
                 share_network_of: Container | None = None):
        self.store, self.image = store, image
        self.name = f"ketch-test-{uuid.uuid4().hex[:10]}"
        self.own_netns = share_network_of is None
        self.dir = tmp / self.name
        self.rootfs = self.dir / "rootfs"
        self.runc_root = self.dir / "runc"
        self.netns = Path("/run/netns") / (share_network_of.name if share_network_of else self.name)
        config = image.config
        self.args = args or [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
        self.started = False

    def __enter__(self) -> Container:
        if self.dir.exists():  # already set up by start()
            return self
        self.dir.mkdir(parents=True)
        if self.own_netns:
            subprocess.run(["ip", "netns", "add", self.name], check=True)
            subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        self.store.mount_rootfs(self.image, self.rootfs, self.dir)
        env = self.image.config.get("Env", [])
        if not any(e.startswith("PATH=") for e in env):  # as containerd, a default PATH
            env = [f"PATH={DEFAULT_PATH}", *env]
        spec = run_spec(self.rootfs, self.args, env,
                        self.image.config.get("WorkingDir") or "/", 0, 0, self.netns, self.name)
        (self.dir / "config.json").write_bytes(canonical_json(spec))
        return self

    def run(self, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run in the foreground; the result has the container's output and exit code."""
        return subprocess.run(["runc", "--root", str(self.runc_root), "run", "--bundle", str(self.dir), self.name],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)

    def start(self) -> Container:
        """Set up (if not yet) and run detached; use as `with Container(...).start() as c:`."""
        self.__enter__()
        with open(self.dir / "output", "wb") as out:
            subprocess.run(["runc", "--root", str(self.runc_root), "run", "-d", "--bundle", str(self.dir), self.name],
                           stdin=subprocess.DEVNULL, stdout=out, stderr=out, check=True, timeout=30)
        self.started = True
        return self

    def fetch(self, url: str, timeout: float = 10.0) -> tuple[int, str]:
        """(exit code, body) of busybox wget run in the container's network namespace."""
        deadline = time.monotonic() + timeout
        while True:
            result = subprocess.run(["ip", "netns", "exec", self.netns.name, "busybox", "timeout", "3", "busybox", "wget", "-q", "-O", "-",
                                     url], capture_output=True, text=True, timeout=10)
            if result.returncode == 0 or "404" in result.stderr or time.monotonic() > deadline:
                return result.returncode, result.stdout + result.stderr
            time.sleep(0.05)

    def exec(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["runc", "--root", str(self.runc_root), "exec", self.name, *args],
                              capture_output=True, text=True, timeout=30)

    def __exit__(self, *exc) -> None:
        subprocess.run(["runc", "--root", str(self.runc_root), "delete", "--force", self.name],
                       capture_output=True)
        with contextlib.suppress(Exception):
            self.store.unmount_rootfs(self.rootfs)
        if self.own_netns:
            subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)


@pytest.fixture(scope="module")
def book_store(tmp_path_factory) -> ImageStore:
    """Every bundled image, copied from the user's cache (built there on the first run)."""
    s = ImageStore(tmp_path_factory.mktemp("book") / "images")
    bundled.ensure(s)
    return s


def test_bundled_images_present_and_idempotent(book_store):
    names = {t for i in book_store.list() for t in i.repo_tags}
    for wanted in ("docker.io/library/busybox:latest", "docker.io/library/nginx:latest",
                   "docker.io/jonbaier/pod-scaling:0.3", "docker.io/jonbaier/httpwhalesay:0.1",
                   "docker.io/williamyeh/boom:latest", "docker.io/docker/whalesay:latest",
                   "docker.io/bitnami/apache:latest", "docker.io/library/debian:latest"):
        assert wanted in names
    started = time.monotonic()
    again = bundled.ensure(book_store, ["nginx", "jonbaier/pod-scaling:0.2"])
    assert time.monotonic() - started < 2
    ids = {i.id for i in again}
    assert book_store.resolve("nginx").id in ids and book_store.resolve("jonbaier/pod-scaling:0.2").id in ids


def test_busybox_true_in_runc(book_store, tmp_path):
    image = book_store.resolve("busybox")
    assert image is not None and image.config["Cmd"] == ["sh"]
    with Container(book_store, image, tmp_path, ["busybox", "true"]) as c:
        assert (c.rootfs / "bin" / "busybox").is_file()
        assert os.readlink(c.rootfs / "bin" / "wget") == "busybox"
        result = c.run()
        assert result.returncode == 0, result.stderr
    assert not (tmp_path / c.name / "upper" / "bin").exists()


def test_node_express_info_page_and_status_404(book_store, tmp_path):
    image = book_store.resolve("jonbaier/node-express-info:latest")
    assert image.config["Cmd"] == ["node", "index.js"] and "User" not in image.config  # runs as root
    with Container(book_store, image, tmp_path).start() as c:
        code, body = c.fetch("http://127.0.0.1/")
        assert code == 0 and "Container name (hostname)" in body and c.name[:63] in body
        code, body = c.fetch("http://127.0.0.1/status/")
        assert code != 0 and "404" in body
        # The book's load generator, bounded by -n, in the same network namespace (as in a pod).
        boom = book_store.resolve("williamyeh/boom")
        assert boom.config["Entrypoint"] == ["boom"]
        with Container(book_store, boom, tmp_path, ["boom", "-n", "20", "-c", "4", "http://127.0.0.1/"],
                       share_network_of=c) as b:
            result = b.run()
        assert result.returncode == 0 and "Summary:" in result.stdout, result.stderr
        assert "[200]\t20 responses" in result.stdout


def test_boom_whalesay_and_versions(book_store, tmp_path):
    with Container(book_store, book_store.resolve("jonbaier/pod-scaling:0.2"), tmp_path).start() as c:
        code, body = c.fetch("http://127.0.0.1/")
        assert code == 0 and "v0.2" in body
        assert c.exec("sh", "-c", "echo $APP_VERSION").stdout.strip() == "0.2"
    whale = book_store.resolve("docker/whalesay")
    with Container(book_store, whale, tmp_path, ["cowsay", "Finishing that task in a jiffy"]) as c:
        result = c.run()
        assert result.returncode == 0
        assert "< Finishing that task in a jiffy >" in result.stdout and "\\______ o" in result.stdout
    with Container(book_store, book_store.resolve("williamyeh/boom"), tmp_path, ["boom", "-n", "7", "-c", "3",
                                                                                "http://127.0.0.1:9/"]) as c:
        result = c.run()
        assert result.returncode == 0 and "[200]\t0 responses" in result.stdout
        assert "[7]\tfailed requests" in result.stdout


def test_nginx_multi_and_httpwhalesay(book_store, tmp_path):
    with Container(book_store, book_store.resolve("nginx"), tmp_path).start() as c:
        code, body = c.fetch("http://127.0.0.1/")
        assert code == 0 and "<title>Welcome to nginx!</title>" in body
        assert (c.rootfs / "usr/share/nginx/html/index.html").exists()
        # SIGTERM stops it at once, as nginx does (busybox httpd alone as PID 1 would ignore it).
        subprocess.run(["runc", "--root", str(c.runc_root), "kill", c.name, "TERM"], check=True)
        deadline = time.monotonic() + 3
        while json.loads(subprocess.run(["runc", "--root", str(c.runc_root), "state", c.name], capture_output=True,
                                        text=True).stdout)["status"] != "stopped":
            assert time.monotonic() < deadline, "nginx stand-in ignored SIGTERM"
            time.sleep(0.05)
    with Container(book_store, book_store.resolve("jonbaier/node-express-multi"), tmp_path).start() as c:
        assert "Container Info" in c.fetch("http://127.0.0.1/")[1]
        assert "Fake admin" in c.fetch("http://127.0.0.1:8888/")[1]
    image = book_store.resolve("jonbaier/httpwhalesay:0.1")
    with Container(book_store, image, tmp_path, ["node", "index.js", "Whale Type A, Here."]).start() as c:
        code, body = c.fetch("http://127.0.0.1/")
        assert code == 0 and "Whale Type A, Here." in body and "##" in body
    with Container(book_store, book_store.resolve("debian"), tmp_path,
                   ["bash", "-c", ". /etc/os-release && echo $VERSION_CODENAME && curl -s 127.0.0.1:9"]) as c:
        result = c.run()
        assert result.stdout.strip() == "bookworm" and "Connection refused" in result.stderr


def _umoci_layout(tmp: Path, files: dict[str, str]) -> Path:
    """An OCI layout `layout:app` made by umoci: Debian's busybox plus `files`, CMD sh."""
    layout = tmp / "layout"
    subprocess.run(["umoci", "init", "--layout", str(layout)], check=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:app"], check=True)
    bundle = tmp / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:app", str(bundle)], check=True, capture_output=True)
    (bundle / "rootfs" / "bin").mkdir(parents=True)
    subprocess.run(["cp", "/bin/busybox", str(bundle / "rootfs" / "bin" / "busybox")], check=True)
    os.symlink("busybox", bundle / "rootfs" / "bin" / "sh")
    for name, text in files.items():
        (bundle / "rootfs" / name).parent.mkdir(parents=True, exist_ok=True)
        (bundle / "rootfs" / name).write_text(text)
    subprocess.run(["umoci", "repack", "--image", f"{layout}:app", str(bundle)], check=True)
    subprocess.run(["umoci", "config", "--image", f"{layout}:app", "--config.cmd", "sh",
                    "--config.env", "GREETING=hi"], check=True)
    subprocess.run(["rm", "-rf", str(bundle)], check=True)
    return layout


def test_load_skopeo_archives_and_layouts(tmp_path, store):
    layout = _umoci_layout(tmp_path, {"etc/motd": "from umoci\n"})
    docker_tar, oci_tar = tmp_path / "app-docker.tar", tmp_path / "app-oci.tar"
    subprocess.run(["skopeo", "copy", "-q", f"oci:{layout}:app", f"docker-archive:{docker_tar}:team/app:1.0"], check=True)
    subprocess.run(["skopeo", "copy", "-q", f"oci:{layout}:app", f"oci-archive:{oci_tar}:team/app:2.0"], check=True)
    data_dir = store.root.parent

    assert ketch_image(data_dir, "load", str(docker_tar)).stdout == "Loaded image: docker.io/team/app:1.0\n"
    assert ketch_image(data_dir, "load", "-i", str(oci_tar)).stdout == "Loaded image: docker.io/team/app:2.0\n"
    assert ketch_image(data_dir, "load", str(layout), "--name", "local/app").stdout == \
        "Loaded image: docker.io/local/app:app\n"
    listing = ketch_image(data_dir, "ls").stdout.splitlines()
    assert listing[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    rows = {tuple(line.split()[:2]) for line in listing[1:]}
    assert {("docker.io/team/app", "1.0"), ("docker.io/team/app", "2.0"), ("docker.io/local/app", "app")} <= rows
    # One image (one config) whatever the archive format; its layer unpacked once.
    image = store.resolve("team/app:1.0")
    assert store.resolve("team/app:2.0").id == image.id
    assert len(list((store.root / "layers").iterdir())) == 2  # the layer and the empty one
    inspected = json.loads(ketch_image(data_dir, "inspect", "team/app:1.0").stdout)[0]
    assert inspected["Id"] == image.id and inspected["Config"]["Cmd"] == ["sh"]
    assert "GREETING=hi" in inspected["Config"]["Env"]

    with Container(store, image, tmp_path, ["sh", "-c", "cat /etc/motd; echo $GREETING"]) as c:
        result = c.run()
    assert result.returncode == 0 and result.stdout == "from umoci\nhi\n"

    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar")
    failed = ketch_image(data_dir, "load", str(bad), check=False)
    assert failed.returncode == 1 and "not an image archive" in failed.stderr


def test_tag_rm_and_ids(tmp_path, store):
    layout = _umoci_layout(tmp_path, {})
    [(image, names)] = load(store, layout, name="team/app:ignored")
    assert names == ["docker.io/team/app:app"]
    data_dir = store.root.parent
    ketch_image(data_dir, "tag", "team/app:app", "127.0.0.1:5000/team/app:v2")
    assert store.resolve("127.0.0.1:5000/team/app:v2").id == image.id
    assert store.resolve(image.short_id).id == image.id
    assert ketch_image(data_dir, "ls", "-q").stdout.split() == [image.short_id]
    out = ketch_image(data_dir, "rm", "team/app:app").stdout
    assert out == "Untagged: docker.io/team/app:app\n"  # another name is left: the image stays
    assert store.resolve(image.id) is not None
    out = ketch_image(data_dir, "rm", "127.0.0.1:5000/team/app:v2").stdout
    assert out == f"Untagged: 127.0.0.1:5000/team/app:v2\nDeleted: {image.id}\n"
    assert store.list() == [] and list((store.root / "blobs" / "sha256").iterdir()) == []
    assert [p.name for p in (store.root / "layers").iterdir()] == ["empty"]
    missing = ketch_image(data_dir, "rm", "nope", check=False)
    assert missing.returncode == 1 and missing.stderr == "Error: No such image: nope\n"


def test_build_instructions_layers_and_whiteouts(tmp_path, book_store):
    context = tmp_path / "ctx"
    (context / "site").mkdir(parents=True)
    (context / "site" / "index.html").write_text("<h1>hi</h1>\n")
    (context / "run.sh").write_text("#!/bin/sh\necho running\n")
    (context / "run.sh").chmod(0o755)
    with tarfile.open(context / "extra.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("extra/readme")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    (context / "Containerfile").write_text("""\
FROM busybox
ARG GREETING=hello
LABEL org.example.team="book club" version=1
ENV APP_HOME=/app PATH=/app/bin:/usr/local/bin:/usr/bin:/bin
WORKDIR $APP_HOME
COPY site/ ./www/
COPY run.sh bin/
ADD extra.tar.gz /opt/
RUN echo "$GREETING" > greeting && mkdir -p /var/cache/junk && touch /var/cache/junk/a /etc/deleteme
RUN rm -rf /etc/deleteme /var/cache/junk && rm /bin/vi && ip route > /app/routes && ip -o link > /app/links
USER nobody
EXPOSE 8080 9000/udp
ENTRYPOINT run.sh
""")
    out = io.StringIO()
    image = build(book_store, context, ["team/built:1"], build_args={"GREETING": "bonjour"}, out=out)
    log = out.getvalue()
    assert log.startswith("STEP 1/13: FROM busybox\n") and "STEP 13/13: ENTRYPOINT run.sh" in log
    assert "Successfully tagged docker.io/team/built:1" in log and log.rstrip().endswith(image.id[7:])
    config = image.config
    assert config["Entrypoint"] == ["/bin/sh", "-c", "run.sh"] and "Cmd" not in config
    assert config["User"] == "nobody" and config["WorkingDir"] == "/app"
    assert config["ExposedPorts"] == {"8080/tcp": {}, "9000/udp": {}}
    assert config["Labels"]["org.example.team"] == "book club"
    assert "APP_HOME=/app" in config["Env"] and not any(e.startswith("GREETING=") for e in config["Env"])
    base = book_store.resolve("busybox")
    assert image.diff_ids[:len(base.diff_ids)] == base.diff_ids
    assert len(image.layer_dirs) == len(base.layer_dirs) + 6  # WORKDIR, COPY, COPY, ADD, RUN, RUN

    with Container(book_store, image, tmp_path, ["sh", "-c", "true"]) as c:
        root = c.rootfs
        assert (root / "app/www/index.html").read_text() == "<h1>hi</h1>\n"
        assert os.access(root / "app/bin/run.sh", os.X_OK)
        assert (root / "opt/extra/readme").read_text() == "abc"
        assert (root / "app/greeting").read_text() == "bonjour\n"
        assert not (root / "etc/deleteme").exists() and not (root / "var/cache/junk").exists()
        assert not (root / "bin/vi").exists() and (root / "bin/ls").exists()
        assert (root / "app/routes").read_text() == ""  # RUN had no network but loopback
        assert [line.split(":")[1].strip() for line in (root / "app/links").read_text().splitlines()] == ["lo"]
        # The entrypoint runs as nobody from /app.
        spec = json.loads((c.dir / "config.json").read_text())
    assert spec["process"]["cwd"] == "/app"
    with Container(book_store, image, tmp_path) as c:
        result = c.run()
    assert result.returncode == 0 and result.stdout == "running\n"


def test_build_failure_reports_step_and_cleans_up(tmp_path, book_store):
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Containerfile").write_text("FROM busybox\nRUN touch /x && exit 3\n")
    before = set((book_store.root / "layers").iterdir())
    with pytest.raises(BuildError, match=r'building at STEP "RUN touch /x && exit 3": .*exit status 3'):
        build(book_store, context, ["team/broken:1"], out=io.StringIO())
    assert book_store.resolve("team/broken:1") is None
    assert list((book_store.root / "tmp").iterdir()) == []
    assert set((book_store.root / "layers").iterdir()) == before
    assert not _mounts_under(book_store.root)
    (context / "Containerfile").write_text("FROM nosuch/image\n")
    with pytest.raises(BuildError, match="docker.io/nosuch/image:latest.*not found"):
        build(book_store, context, ["team/broken:1"], out=io.StringIO())
    cli = subprocess.run([*KETCH, "image", "build", "--data-dir", str(book_store.root.parent), "-t", "x", str(context)],
                         capture_output=True, text=True)
    assert cli.returncode == 1 and cli.stderr.startswith("Error: building at STEP \"FROM nosuch/image\"")


def test_prune_removes_least_recently_used_unused_images(tmp_path, book_store):
    store = ImageStore(tmp_path / "images")
    bundled.ensure(store, ["busybox", "nginx", "jonbaier/pod-scaling:0.1", "jonbaier/pod-scaling:0.2"])
    nginx, v1, v2 = (store.resolve(n) for n in ("nginx", "jonbaier/pod-scaling:0.1", "jonbaier/pod-scaling:0.2"))
    with Container(store, v1, tmp_path, ["true"]):
        pass  # mounting marks v1 used now
    time.sleep(0.01)
    with Container(store, v2, tmp_path, ["true"]):
        pass
    removed = store.prune(keep={store.resolve("busybox").id}, target_bytes=1)
    assert len(removed) == 1 and removed[0] not in (v1.id, v2.id)  # never-used images go first
    removed = store.prune(keep={store.resolve("busybox").id, v2.id}, target_bytes=10**12)
    assert v1.id in removed and store.resolve("jonbaier/pod-scaling:0.2") is not None
    assert store.resolve("busybox") is not None and store.resolve("nginx") is None
    # Layers still used by the kept images stay; the removed images' own layers are gone.
    v2 = store.resolve("jonbaier/pod-scaling:0.2")
    with Container(store, v2, tmp_path, ["true"]):
        # A mounted root filesystem protects its image from rm and from the GC.
        assert store.prune(keep=set(), target_bytes=10**12) == []  # busybox shares its layers
        assert store.resolve("jonbaier/pod-scaling:0.2") is not None
        refused = ketch_image(store.root.parent, "rm", v2.id, check=False)
        assert refused.returncode == 1 and "image is being used by a running container" in refused.stderr
        assert all(d.is_dir() for d in v2.layer_dirs)
    assert all(d.is_dir() for d in store.resolve("jonbaier/pod-scaling:0.2").layer_dirs)
    assert not any(d.exists() for d in nginx.layer_dirs if d not in v2.layer_dirs)


def test_build_entrypoint_cmd_and_chown(tmp_path, book_store):
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "f").write_text("x")
    (context / "Containerfile").write_text(
        "FROM busybox\nCMD [\"keep\"]\nENTRYPOINT [\"/bin/echo\"]\nCOPY --chown=nobody:nogroup f /data/f\n")
    image = build(book_store, context, ["team/ep:1"], out=io.StringIO())
    assert image.config["Entrypoint"] == ["/bin/echo"] and image.config["Cmd"] == ["keep"]
    (context / "Containerfile").write_text("FROM team/ep:1\nENTRYPOINT [\"/bin/echo\", \"child\"]\n")
    child = build(book_store, context, ["team/ep:2"], out=io.StringIO())
    assert "Cmd" not in child.config and child.layer_dirs == image.layer_dirs  # no file changes, no layer
    with Container(book_store, child, tmp_path) as c:
        st = (c.rootfs / "data" / "f").stat()
        assert (st.st_uid, st.st_gid) == (65534, 65534)
        assert c.run().stdout == "child\n"
    digest = child.manifest_digest
    book_store.commit(book_store.read_blob(digest), [], [f"docker.io/team/ep@{digest}"])
    assert book_store.resolve(f"team/ep:whatever@{digest}").id == child.id


def test_concurrent_loads_share_one_store(tmp_path, store):
    """Agents and the CLI on one machine share the store: parallel loads of archives with one
    layer end with every name and the layer unpacked once."""
    layout = _umoci_layout(tmp_path, {"etc/motd": "shared\n"})
    archives = []
    for n in range(4):
        path = tmp_path / f"a{n}.tar"
        subprocess.run(["skopeo", "copy", "-q", f"oci:{layout}:app", f"docker-archive:{path}:team/par:{n}"], check=True)
        archives.append(path)
    procs = [subprocess.Popen([*KETCH, "image", "load", "--data-dir", str(store.root.parent), str(a)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for a in archives]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    image = store.resolve("team/par:0")
    assert sorted(image.repo_tags) == [f"docker.io/team/par:{n}" for n in range(4)]
    assert len([p for p in (store.root / "layers").iterdir() if p.name != "empty"]) == 1
    assert list((store.root / "tmp").iterdir()) == []


def test_bundled_rebuilds_when_its_sources_change(tmp_path, monkeypatch):
    import shutil
    images_dir = tmp_path / "images-src"
    shutil.copytree(bundled.IMAGES_DIR, images_dir, symlinks=True)
    monkeypatch.setattr(bundled, "IMAGES_DIR", images_dir)
    store = ImageStore(tmp_path / "images")
    first = bundled.ensure(store, ["debian"], cache=False)[-1]
    assert bundled.ensure(store, ["debian"], cache=False)[-1].id == first.id  # unchanged: skipped
    (images_dir / "debian" / "rootfs" / "etc" / "debian_version").write_text("12.1\n")
    second = bundled.ensure(store, ["debian"], cache=False)[-1]
    assert second.id != first.id and store.resolve("debian:bookworm").id == second.id
    assert store.resolve(first.id) is None  # the superseded build is gone
    assert store.resolve("busybox").id == bundled.ensure(store, ["busybox"], cache=False)[0].id
