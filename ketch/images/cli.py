"""`ketch image …`: the machine's image store from the command line (ls, rm, tag, inspect, load,
build, pull, push), acting on `<data-dir>/images` like every node agent on the machine."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Callable


def add_parser(sub: argparse._SubParsersAction, default_data_dir: Callable[[], Path]) -> None:
    image = sub.add_parser("image", help="manage the machine's container images (ls, build, load, pull, ...)")
    isub = image.add_subparsers(dest="image_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="state directory whose images/ is the store (default as ketch server's)")

    def cmd(name: str, func: Callable[[argparse.Namespace], int], help: str, aliases=()) -> argparse.ArgumentParser:
        p = isub.add_parser(name, help=help, parents=[common], aliases=list(aliases))
        p.set_defaults(func=lambda a: _run(func, a, default_data_dir))
        return p

    p = cmd("ls", _ls, "list images", aliases=["list"])
    p.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    p.add_argument("--digests", action="store_true", help="show the DIGEST column")
    p.add_argument("--no-trunc", action="store_true", help="full image ids")
    p = cmd("rm", _rm, "remove images (untag; the image goes with its last name)", aliases=["rmi"])
    p.add_argument("images", nargs="+")
    p.add_argument("-f", "--force", action="store_true", help="remove even an image a container uses")
    p = cmd("tag", _tag, "give an image another name")
    p.add_argument("source")
    p.add_argument("target")
    p = cmd("inspect", _inspect, "print images as JSON")
    p.add_argument("images", nargs="+")
    p = cmd("load", _load, "load a docker-archive or OCI archive/layout")
    p.add_argument("file", nargs="?", help="archive file or OCI layout directory")
    p.add_argument("-i", "--input", help="the archive (as docker load -i)")
    p.add_argument("--name", help="name for an OCI image whose index carries only a tag")
    p = cmd("build", _build, "build an image from a Containerfile")
    p.add_argument("context")
    p.add_argument("-t", "--tag", action="append", default=[], help="NAME[:TAG] (repeatable)")
    p.add_argument("-f", "--file", help="the Containerfile (default CONTEXT/Containerfile or Dockerfile)")
    p.add_argument("--build-arg", action="append", default=[], help="KEY=VALUE for an ARG")
    for name, func, help in (("pull", _pull, "pull an image from a registry"),
                             ("push", _push, "push an image to a registry")):
        p = cmd(name, func, help)
        p.add_argument("image")
        if name == "push":
            p.add_argument("destination", nargs="?", help="where to push (default the image's name)")
        p.add_argument("--plain-http", action="store_true", help="speak HTTP (default for loopback registries)")
        p.add_argument("--insecure", action="store_true", help="skip TLS certificate verification")
        p.add_argument("--creds", help="USER:PASSWORD for the registry")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace,
         default_data_dir: Callable[[], Path]) -> int:
    from .errors import ImageError
    from .store import ImageStore
    args.store = ImageStore(Path(args.data_dir or default_data_dir()) / "images")
    try:
        return func(args)
    except ImageError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1


def human_size(n: float) -> str:
    """docker's SI sizes: 1.98MB, 512kB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}"


def human_ago(created: str) -> str:
    """docker's "About a minute ago", "3 hours ago" for an RFC 3339 time."""
    import datetime
    import re
    try:
        then = datetime.datetime.fromisoformat(re.sub(r"\.\d+", "", created).replace("Z", "+00:00"))
    except ValueError:
        return "N/A"
    if then.tzinfo is None:
        then = then.replace(tzinfo=datetime.timezone.utc)
    seconds = max(0, time.time() - then.timestamp())
    for limit, unit, size in ((60, "second", 1), (3600, "minute", 60), (86400, "hour", 3600),
                              (86400 * 14, "day", 86400), (86400 * 60, "week", 86400 * 7),
                              (86400 * 730, "month", 86400 * 30), (float("inf"), "year", 86400 * 365)):
        if seconds < limit:
            count = int(seconds // size)
            if unit == "second":
                return "Less than a second ago" if count < 1 else f"{count} seconds ago"
            if count <= 1:
                return "About a minute ago" if unit == "minute" else f"About an {unit} ago" if unit == "hour" \
                    else f"1 {unit} ago"
            return f"{count} {unit}s ago"
    return "N/A"


def _ls(args: argparse.Namespace) -> int:
    from . import reference
    images = sorted(args.store.list(), key=lambda i: i.created, reverse=True)
    if args.quiet:
        seen = []
        for i in images:
            short = i.id if args.no_trunc else i.short_id
            if short not in seen:
                seen.append(short)
        print("\n".join(seen)) if seen else None
        return 0
    rows = []
    for i in images:
        names = [reference.parse(t) for t in i.repo_tags] or [None]
        digest = i.repo_digests[0].partition("@")[2] if i.repo_digests else "<none>"
        for ref in names:
            repo = ref.name if ref else (i.repo_digests[0].partition("@")[0] if i.repo_digests else "<none>")
            row = [repo, ref.tag if ref else "<none>"]
            if args.digests:
                row.append(digest)
            row += [i.id if args.no_trunc else i.short_id, human_ago(i.created), human_size(i.size)]
            rows.append(row)
    header = ["REPOSITORY", "TAG"] + (["DIGEST"] if args.digests else []) + ["IMAGE ID", "CREATED", "SIZE"]
    widths = [max(len(r[c]) for r in [header] + rows) for c in range(len(header))]
    for r in [header] + rows:
        print("   ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    return 0


def _rm(args: argparse.Namespace) -> int:
    from .errors import ImageInUse, ImageNotFound
    rc = 0
    for ref in args.images:
        try:
            untagged, deleted = args.store.remove(ref, force=args.force)
        except ImageNotFound:
            print(f"Error: No such image: {ref}", file=sys.stderr)
            rc = 1
            continue
        except ImageInUse as e:
            print(f"Error: {e}", file=sys.stderr)
            rc = 1
            continue
        for name in untagged:
            print(f"Untagged: {name}")
        if deleted:
            print(f"Deleted: {deleted}")
    return rc


def _tag(args: argparse.Namespace) -> int:
    from .errors import ImageNotFound
    try:
        args.store.tag(args.source, args.target)
    except ImageNotFound:
        print(f"Error: No such image: {args.source}", file=sys.stderr)
        return 1
    return 0


def inspect_json(image) -> dict:
    """docker image inspect's shape for one image."""
    spec = image.spec
    return {"Id": image.id, "RepoTags": image.repo_tags, "RepoDigests": image.repo_digests,
            "Created": image.created, "Size": image.size, "Architecture": spec.get("architecture", ""),
            "Os": spec.get("os", ""), "Author": spec.get("author", ""), "Config": image.config,
            "RootFS": {"Type": "layers", "Layers": image.diff_ids}, "History": spec.get("history", []),
            "Metadata": {"LastTagTime": ""}, "ManifestDigest": image.manifest_digest,
            "LayerDirs": [str(d) for d in image.layer_dirs]}


def _inspect(args: argparse.Namespace) -> int:
    import orjson
    found, rc = [], 0
    for ref in args.images:
        image = args.store.resolve(ref)
        if image is None:
            print(f"Error: No such image: {ref}", file=sys.stderr)
            rc = 1
            continue
        found.append(inspect_json(image))
    print(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
    return rc


def _load(args: argparse.Namespace) -> int:
    from .archive import load
    path = args.input or args.file
    if not path:
        print("Error: requires an archive: ketch image load FILE (or -i FILE)", file=sys.stderr)
        return 2
    if not os.path.exists(path):
        print(f"Error: open {path}: no such file or directory", file=sys.stderr)
        return 1
    for image, names in load(args.store, path, name=args.name):
        if names:
            for tag in names:
                print(f"Loaded image: {tag}")
        else:
            print(f"Loaded image ID: {image.id}")
    return 0


def _build(args: argparse.Namespace) -> int:
    from .build import build
    build_args = dict(a.partition("=")[::2] for a in args.build_arg)
    build(args.store, args.context, args.tag, containerfile_path=args.file, build_args=build_args)
    return 0


def _creds(args: argparse.Namespace) -> tuple[str, str] | None:
    if not args.creds:
        return None
    user, _, password = args.creds.partition(":")
    return user, password


class ProgressBar:
    """Pull progress on stderr: one redrawn line on a terminal, a line per finished blob otherwise."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.tty = stream, stream.isatty()
        self.blobs: dict[str, tuple[int, int]] = {}
        self.finished: set[str] = set()

    def __call__(self, kind: str, digest: str, done: int, total: int) -> None:
        self.blobs[digest] = (done, total)
        if done >= total and digest not in self.finished:
            self.finished.add(digest)
            if not self.tty:
                self.stream.write(f"Copying {kind} {digest[7:19]} done ({human_size(total)})\n")
        if self.tty:
            got = sum(d for d, _ in self.blobs.values())
            want = sum(t for _, t in self.blobs.values()) or 1
            width = 30
            fill = int(width * got / want)
            bar = "=" * fill + (">" if fill < width else "") + " " * (width - fill - 1)
            self.stream.write(f"\rCopying blobs [{bar}] {human_size(got)}/{human_size(want)} "
                              f"({len(self.finished)}/{len(self.blobs)})")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.blobs:
            self.stream.write("\n")


def _pull(args: argparse.Namespace) -> int:
    bar = None if args.quiet else ProgressBar()
    try:
        image = asyncio.run(args.store.pull(args.image, auth=_creds(args), progress=bar,
                                            plain_http=True if args.plain_http else None, insecure=args.insecure))
    finally:
        if bar:
            bar.close()
    print(f"Image is up to date for {image.id}")
    return 0


def _push(args: argparse.Namespace) -> int:
    from .registry import push
    dest = args.destination or args.image
    digest = asyncio.run(push(args.store, args.image, dest, auth=_creds(args),
                              plain_http=True if args.plain_http else None, insecure=args.insecure))
    print(f"{dest}: digest: {digest}")
    return 0
