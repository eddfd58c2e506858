"""The images the tests and the book's walkthroughs need, built offline from the repo's images/
directory (see images/README.md) with programs of the host's Debian: busybox-static, and python3 for
the python image.

`ensure(store)` makes them present in a store: each is built once into a cache store and copied
from there, and an image is rebuilt only when its sources change (a hash of its build context, its
build args and its base image's hash is kept in the label io.ketch.bundled.source).
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from . import reference
from .build import build
from .errors import ImageError
from .store import Image, ImageStore

IMAGES_DIR = Path(__file__).resolve().parents[2] / "images"
BUSYBOX = Path("/bin/busybox")
PYTHON = Path("/usr/bin/python3.11")
PYTHON_STDLIB = Path("/usr/lib/python3.11")
SOURCE_LABEL = "io.ketch.bundled.source"


@dataclass(frozen=True)
class HostProgram:
    """A program an image takes from the host machine: the build puts the binary, the files it
    needs to run and its links under the build context's rootfs/ (which the Containerfile copies)."""
    binary: Path
    package: str                                    # the Debian package that installs it
    image_path: str                                 # where the binary goes, relative to /
    links: Callable[[], dict[str, str]]             # path in the image -> symlink target
    support: Callable[[], list[tuple[Path, str]]] = lambda: []   # (host file, path in the image)

    def check(self) -> None:
        if not self.binary.exists():
            raise ImageError(f"{self.binary} is missing: install Debian's {self.package} (make setup)")

    def fingerprint(self, sha) -> None:
        """The binary's bytes, and the size and mtime of each supporting file (reading them all
        would slow down every ensure())."""
        self.check()
        sha.update(self.binary.read_bytes())
        for source, dest in self.support():
            st = source.stat()
            sha.update(f"{dest}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())

    def fill(self, rootfs: Path) -> None:
        for source, dest in [(self.binary, self.image_path), *self.support()]:
            (rootfs / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, rootfs / dest)     # follows symlinks: the image gets the file
        for path, target in self.links().items():
            (rootfs / path).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, rootfs / path)


def _busybox_links() -> dict[str, str]:
    """A link per applet in /bin, as Debian's busybox-static lists them."""
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
    return {f"bin/{a}": "busybox" for a in applets if a != "busybox" and "/" not in a}


# What the python image leaves out of the standard library: tests, GUIs, pip's bootstrap, the
# static libpython of python3.11-dev, the host's installed packages, compiled caches.
_STDLIB_SKIPPED = {"test", "__pycache__", "dist-packages", "site-packages", "idlelib", "tkinter", "ensurepip",
                   "config-3.11-x86_64-linux-gnu"}
_TEST_MODULE_PREFIXES = ("_test", "_xxtestfuzz", "_ctypes_test", "xxlimited")


@functools.cache
def _python_support() -> list[tuple[Path, str]]:
    """The standard library (less _STDLIB_SKIPPED), then every shared library that the interpreter
    and its extension modules load, as `ldd` names them, the dynamic loader among them."""
    files = []
    for path in sorted(PYTHON_STDLIB.rglob("*")):
        parts = path.relative_to(PYTHON_STDLIB).parts
        if set(parts) & _STDLIB_SKIPPED or not path.is_file():
            continue
        if parts[0] == "lib-dynload" and path.name.startswith(_TEST_MODULE_PREFIXES):
            continue
        if path.is_symlink() and not path.resolve().is_relative_to(PYTHON_STDLIB):
            continue                                # e.g. sitecustomize.py -> /etc/python3.11/
        files.append((path, str(path.relative_to("/"))))
    modules = [PYTHON] + [p for p, _ in files if p.suffix == ".so"]
    ldd = subprocess.run(["ldd", *map(str, modules)], capture_output=True, text=True, check=True).stdout
    libraries = sorted({word for line in ldd.splitlines() for word in line.split() if word.startswith("/")
                        and not word.endswith(":")})
    return files + [(Path(lib), lib.lstrip("/")) for lib in libraries]


def _python_links() -> dict[str, str]:
    return {"usr/bin/python3": "python3.11", "usr/local/bin/python": "/usr/bin/python3.11",
            "usr/local/bin/python3": "/usr/bin/python3.11"}


HOST_BUSYBOX = HostProgram(BUSYBOX, "busybox-static", "bin/busybox", _busybox_links)
HOST_PYTHON = HostProgram(PYTHON, "python3.11-minimal and libpython3.11-stdlib, bookworm's python3",
                          "usr/bin/python3.11", _python_links, _python_support)


@dataclass(frozen=True)
class Bundled:
    directory: str                 # under images/
    tags: tuple[str, ...]
    build_args: tuple[tuple[str, str], ...] = field(default=())
    host: HostProgram | None = None   # a program the build context takes from the host

    @property
    def name(self) -> str:
        return str(reference.parse(self.tags[0]))

    def base(self) -> str | None:
        for line in (IMAGES_DIR / self.directory / "Containerfile").read_text().splitlines():
            words = line.split()
            if words and words[0].upper() == "FROM":
                return None if words[1] == "scratch" else str(reference.parse(words[1]))
        return None


BUNDLED: tuple[Bundled, ...] = (
    Bundled("busybox", ("busybox:latest",), host=HOST_BUSYBOX),
    Bundled("httpd-base", ("ketch.io/httpd-base:latest",)),
    Bundled("debian", ("debian:latest", "debian:bookworm")),
    Bundled("nginx", ("nginx:latest",)),
    Bundled("bitnami-apache", ("bitnami/apache:latest",)),
    Bundled("whalesay", ("docker/whalesay:latest",)),
    Bundled("boom", ("williamyeh/boom:latest",)),
    Bundled("node-express-info", ("jonbaier/node-express-info:latest",)),
    Bundled("node-express-multi", ("jonbaier/node-express-multi:latest",)),
    Bundled("pod-scaling", ("jonbaier/pod-scaling:0.1",), (("VERSION", "0.1"), ("COLOR", "lightblue"))),
    Bundled("pod-scaling", ("jonbaier/pod-scaling:0.2",), (("VERSION", "0.2"), ("COLOR", "lightgreen"))),
    Bundled("pod-scaling", ("jonbaier/pod-scaling:0.3", "jonbaier/pod-scaling:latest"),
            (("VERSION", "0.3"), ("COLOR", "lightyellow"))),
    Bundled("httpwhalesay", ("jonbaier/httpwhalesay:0.1",), (("VERSION", "0.1"),)),
    Bundled("httpwhalesay", ("jonbaier/httpwhalesay:0.2", "jonbaier/httpwhalesay:latest"), (("VERSION", "0.2"),)),
    Bundled("python", ("python:latest", "python:3"), host=HOST_PYTHON),
)


def names() -> list[str]:
    return [str(reference.parse(t)) for b in BUNDLED for t in b.tags]


def default_cache_dir() -> Path:
    if os.environ.get("KETCH_IMAGE_CACHE"):
        return Path(os.environ["KETCH_IMAGE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ketch" / "images"


def _by_tag() -> dict[str, Bundled]:
    return {str(reference.parse(t)): b for b in BUNDLED for t in b.tags}


def source_hash(spec: Bundled) -> str:
    sha = hashlib.sha256()
    base = spec.base()
    if base:
        sha.update(source_hash(_by_tag()[base]).encode())
    root = IMAGES_DIR / spec.directory
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        sha.update(f"{path.relative_to(root)}\0{st.st_mode:o}\0".encode())
        if path.is_file():
            sha.update(path.read_bytes())
    if spec.host:
        spec.host.fingerprint(sha)
    sha.update(repr((spec.tags, spec.build_args)).encode())
    return sha.hexdigest()[:32]


def _current(store: ImageStore, spec: Bundled) -> Image | None:
    """The store's image for `spec` when every tag names it and its sources are unchanged."""
    image = store.resolve(spec.tags[0])
    if image is None or (image.config.get("Labels") or {}).get(SOURCE_LABEL) != source_hash(spec):
        return None
    if not all(str(reference.parse(t)) in image.repo_tags for t in spec.tags):
        return None
    return image


@contextlib.contextmanager
def _context(spec: Bundled, work: Path) -> Iterator[Path]:
    """The build context: the image's directory, with its host program under rootfs/."""
    if spec.host is None:
        yield IMAGES_DIR / spec.directory
        return
    context = work / f"{spec.directory}-context"
    shutil.copytree(IMAGES_DIR / spec.directory, context, symlinks=True)
    spec.host.fill(context / "rootfs")
    try:
        yield context
    finally:
        shutil.rmtree(context, ignore_errors=True)


def _build_into(store: ImageStore, spec: Bundled, out: TextIO) -> Image:
    HOST_BUSYBOX.check()                            # every image is busybox or built on it
    if spec.host:
        spec.host.check()
    work = Path(tempfile.mkdtemp(dir=store.root / "tmp", prefix="bundled-"))
    try:
        with _context(spec, work) as context:
            return build(store, context, list(spec.tags), build_args=dict(spec.build_args), out=out,
                         labels={SOURCE_LABEL: source_hash(spec)})
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _drop_superseded(store: ImageStore) -> None:
    """Remove bundled images a rebuild left without any name (older versions of their sources)."""
    for image in store.list():
        if not image.repo_tags and not image.repo_digests and SOURCE_LABEL in (image.config.get("Labels") or {}):
            with contextlib.suppress(ImageError):
                store.remove(image.id)


def _select(wanted: list[str] | None) -> list[Bundled]:
    """The specs for `wanted` (references; None for all) and the bases they are built from, bases
    first."""
    by_tag = _by_tag()
    chosen: list[Bundled] = []

    def add(spec: Bundled) -> None:
        base = spec.base()
        if base:
            add(by_tag[base])
        if spec not in chosen:
            chosen.append(spec)
    for name in wanted if wanted is not None else list(by_tag):
        key = str(reference.parse(name))
        if key not in by_tag:
            raise ImageError(f"{name} is not a bundled image (bundled: {', '.join(sorted(by_tag))})")
        add(by_tag[key])
    return chosen


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One builder at a time per store (parallel test runs share the cache)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "bundled.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def ensure(store: ImageStore, names: list[str] | None = None, cache: ImageStore | None | bool = None,
           out: TextIO | None = None) -> list[Image]:
    """Make the bundled images `names` (references such as "nginx", "jonbaier/pod-scaling:0.2";
    None for all) present and current in `store`. They are built in `cache` (default the user's
    cache dir; False builds straight into `store`) and copied from it."""
    out = out or io.StringIO()
    specs = _select(names)
    if cache is None:
        cache = ImageStore(default_cache_dir())
    images = []
    with _locked(store.root):
        changed = False
        for spec in specs:
            image = _current(store, spec)
            if image is None:
                changed = True
                if cache is False or Path(cache.root).resolve() == store.root.resolve():
                    image = _build_into(store, spec, out)
                else:
                    with _locked(cache.root):
                        source = _current(cache, spec)
                        if source is None:
                            source = _build_into(cache, spec, out)
                            _drop_superseded(cache)
                    image = store.copy_from(cache, source)
            images.append(image)
        if changed:
            _drop_superseded(store)
    return images


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ketch.images.bundled",
                                     description="build the bundled images into a data dir's image store")
    parser.add_argument("--data-dir", help="state directory (default as ketch server's)")
    parser.add_argument("--no-cache", action="store_true", help="build straight into the store")
    parser.add_argument("names", nargs="*", help="images to build (default all)")
    args = parser.parse_args(argv)
    from ..cli.main import default_data_dir
    store = ImageStore(Path(args.data_dir or default_data_dir()) / "images")
    try:
        for image in ensure(store, args.names or None, cache=False if args.no_cache else None, out=sys.stdout):
            print(f"{image.short_id}  {' '.join(image.repo_tags)}")
    except ImageError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
