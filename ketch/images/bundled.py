"""The images the tests and the book's walkthroughs need, built offline from the repo's images/
directory (see images/README.md) with Debian's busybox-static.

`ensure(store)` makes them present in a store: each is built once into a cache store and copied
from there, and an image is rebuilt only when its sources change (a hash of its build context, its
build args and its base image's hash is kept in the label io.ketch.bundled.source).
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import io
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from . import reference
from .build import build
from .errors import ImageError
from .store import Image, ImageStore

IMAGES_DIR = Path(__file__).resolve().parents[2] / "images"
BUSYBOX = Path("/bin/busybox")
SOURCE_LABEL = "io.ketch.bundled.source"


@dataclass(frozen=True)
class Bundled:
    directory: str                 # under images/
    tags: tuple[str, ...]
    build_args: tuple[tuple[str, str], ...] = field(default=())

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
    Bundled("busybox", ("busybox:latest",)),
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
    if spec.directory == "busybox":
        sha.update(BUSYBOX.read_bytes())
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
    """The build context: the image's directory, and for busybox the binary and its links."""
    if spec.directory != "busybox":
        yield IMAGES_DIR / spec.directory
        return
    context = work / "busybox-context"
    shutil.copytree(IMAGES_DIR / "busybox", context, symlinks=True)
    bin_dir = context / "rootfs" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, bin_dir / "busybox")
    import subprocess
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox" and "/" not in applet:
            os.symlink("busybox", bin_dir / applet)
    try:
        yield context
    finally:
        shutil.rmtree(context, ignore_errors=True)


def _build_into(store: ImageStore, spec: Bundled, out: TextIO) -> Image:
    if not BUSYBOX.exists():
        raise ImageError(f"{BUSYBOX} is missing: install Debian's busybox-static (make setup)")
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
