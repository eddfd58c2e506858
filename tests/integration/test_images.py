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
from ketch.images.build import build, run_spec
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
        spec = run_spec(self.rootfs, self.args, self.image.config.get("Env", []),
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
