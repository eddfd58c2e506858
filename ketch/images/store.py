"""The machine's content-addressed OCI image store, shared by every agent and `ketch image`.

Layout under the root (`<data-dir>/images`):
  blobs/sha256/<hex>    manifests, configs and layer blobs as a registry serves them
  layers/<hex>          each layer unpacked once, keyed by its diff id, ready as an overlay lowerdir
  index.json            image records: id (config digest), manifest digest, layers, names
  used/<hex>            touched when a container root is mounted: the image GC's "last used"
  tmp/                  downloads and unpacking in progress (same filesystem, so renames are atomic)
  lock                  flock held while the index or the set of layers changes
Every write lands in tmp/ first and is renamed into place, so a reader never sees half a file.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .. import mounts
from . import layers, reference
from .errors import ContentRemoved, ImageError, ImageInUse, ImageNotFound

if TYPE_CHECKING:
    from .registry import Progress

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass
class Image:
    id: str                       # "sha256:<config digest>"
    repo_tags: list[str]          # normalised: docker.io/library/busybox:latest
    repo_digests: list[str]       # docker.io/library/busybox@sha256:<manifest digest>
    config: dict[str, Any]        # the OCI config's `config`: Env, Entrypoint, Cmd, WorkingDir, User, ...
    layer_dirs: list[Path]        # unpacked layers, lowest first
    size: int                     # bytes of the manifest's config and layer blobs
    manifest_digest: str = ""
    created: str = ""             # RFC 3339, from the image config
    diff_ids: list[str] = field(default_factory=list)
    spec: dict[str, Any] = field(default_factory=dict)  # the whole image config (for inspect)

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or not reference.is_sha256_digest(digest):
        raise ImageError(f"unsupported digest {digest!r}")
    return hexpart


def canonical_json(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)




def _mount_overlay(target: Path, options: str) -> None:
    try:
        mounts.mount("overlay", target, "overlay", options)
    except OSError as e:
        raise ImageError(f"mount overlay on {target}: {os.strerror(e.errno)}") from None


class ImageStore:
    def __init__(self, root: Path | str):
        self.root = Path(root)
        for sub in ("blobs/sha256", "layers", "used", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._empty_layer = self.root / "layers" / "empty"
        self._empty_layer.mkdir(exist_ok=True)
        self._index_path = self.root / "index.json"
        self._cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None

    # ---- locking and the index --------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise changes to the index and the layer set across processes on this machine."""
        with open(self.root / "lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read_index(self, for_update: bool = False) -> dict[str, Any]:
        """The index; `for_update` (lock held) gives a private copy to change and write back, so
        readers in other threads never see a half-changed cached one."""
        if for_update:
            try:
                return orjson.loads(self._index_path.read_bytes())
            except FileNotFoundError:
                return {"images": {}}
        try:
            st = self._index_path.stat()
        except FileNotFoundError:
            return {"images": {}}
        # Every write renames a new file into place, so the inode changes with the content.
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cache and self._cache[0] == key:
            return self._cache[1]
        data = orjson.loads(self._index_path.read_bytes())
        self._cache = (key, data)
        return data

    def _write_index(self, data: dict[str, Any]) -> None:
        self._write_atomic(self._index_path, orjson.dumps(data, option=orjson.OPT_INDENT_2))
        self._cache = None

    def _write_atomic(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    # ---- blobs ------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / _hex(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def read_blob(self, digest: str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise ImageNotFound(f"blob {digest} not found") from None

    def temp_path(self, prefix: str = "tmp-") -> Path:
        """A fresh name under tmp/ for a download or an unpacking in progress (caller removes it)."""
        fd, path = tempfile.mkstemp(dir=self.root / "tmp", prefix=prefix)
        os.close(fd)
        return Path(path)

    def put_blob_bytes(self, data: bytes, expected: str | None = None) -> str:
        digest = sha256_bytes(data)
        if expected and expected != digest:
            raise ImageError(f"digest mismatch: expected {expected}, got {digest}")
        if not self.has_blob(digest):
            self._write_atomic(self.blob_path(digest), data)
        return digest

    def put_blob_file(self, path: Path, expected: str | None = None, move: bool = False) -> str:
        """Add the file at `path` as a blob, verifying `expected`; `move` renames it (it must be
        under tmp/), else it is copied."""
        sha = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                sha.update(chunk)
        digest = "sha256:" + sha.hexdigest()
        if expected and expected != digest:
            raise ImageError(f"digest mismatch: expected {expected}, got {digest}")
        if self.has_blob(digest):
            if move:
                os.unlink(path)
            return digest
        if move:
            os.replace(path, self.blob_path(digest))
        else:
            tmp = self.temp_path()
            shutil.copyfile(path, tmp)
            os.replace(tmp, self.blob_path(digest))
        return digest

    # ---- layers -----------------------------------------------------------------------------

    def layer_dir(self, diff_id: str) -> Path:
        return self.root / "layers" / _hex(diff_id)

    def _ensure_layer(self, blob_digest: str, diff_id: str) -> None:
        final = self.layer_dir(diff_id)
        if final.exists():
            return
        work = Path(tempfile.mkdtemp(dir=self.root / "tmp", prefix="layer-"))
        try:
            got = layers.unpack(self.blob_path(blob_digest), work)
            if got != diff_id:
                raise ImageError(f"layer {blob_digest}: diff id {got} does not match the config's {diff_id}")
            os.chmod(work, 0o755)
            try:
                os.rename(work, final)
            except OSError as e:  # another process unpacked it meanwhile
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)

    def adopt_layer_dir(self, directory: Path, diff_id: str) -> None:
        """Take an already unpacked layer directory (the builder's upper dir) as `diff_id`'s."""
        final = self.layer_dir(diff_id)
        if final.exists():
            shutil.rmtree(directory, ignore_errors=True)
            return
        try:
            os.rename(directory, final)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            shutil.rmtree(directory, ignore_errors=True)

    # ---- images -----------------------------------------------------------------------------

    def commit(self, manifest: bytes, names: list[str] = (), repo_digests: list[str] = ()) -> Image:
        """Record the image whose manifest is `manifest` (its config and layer blobs already in
        the store): unpack missing layers, then name it. `names` are references to tag;
        `repo_digests` are `repo@sha256:…` names a pull gives (the digest the registry serves)."""
        manifest_digest = self.put_blob_bytes(manifest)
        doc = orjson.loads(manifest)
        config_digest = doc["config"]["digest"]
        spec = orjson.loads(self.read_blob(config_digest))
        diff_ids = list(spec.get("rootfs", {}).get("diff_ids", []))
        layer_descs = doc.get("layers", [])
        if len(diff_ids) != len(layer_descs):
            raise ImageError(f"image config lists {len(diff_ids)} layers, the manifest {len(layer_descs)}")
        for desc, diff_id in zip(layer_descs, diff_ids):
            self._ensure_layer(desc["digest"], diff_id)
        size = doc["config"].get("size", 0) + sum(d.get("size", 0) for d in layer_descs)
        tags = [str(reference.parse(n)) for n in names]
        with self.locked():
            index = self._read_index(for_update=True)
            images = index.setdefault("images", {})
            # A concurrent rm or prune may have swept this image's content between download and
            # this lock: say so (a pull retries) rather than record an image with holes.
            for desc, diff_id in zip(layer_descs, diff_ids):
                if not self.layer_dir(diff_id).exists() and not self.has_blob(desc["digest"]):
                    raise ContentRemoved(f"layer {desc['digest']} was removed while the image was being added")
                self._ensure_layer(desc["digest"], diff_id)
            for digest in (manifest_digest, config_digest):
                if not self.has_blob(digest):
                    raise ContentRemoved(f"blob {digest} was removed while the image was being added")
            for other in images.values():
                other["repo_tags"] = [t for t in other["repo_tags"] if t not in tags]
            record = images.get(config_digest) or {
                "id": config_digest, "repo_tags": [], "repo_digests": [], "loaded_at": time.time()}
            record.update({"manifest_digest": manifest_digest, "config_digest": config_digest,
                           "layers": [d["digest"] for d in layer_descs], "diff_ids": diff_ids, "size": size})
            record["repo_tags"] += [t for t in tags if t not in record["repo_tags"]]
            record["repo_digests"] += [d for d in repo_digests if d not in record["repo_digests"]]
            images[config_digest] = record
            self._write_index(index)
        return self._image(record)

    def copy_from(self, other: ImageStore, image: Image) -> Image:
        """Copy `image` (with its names) from another store: blobs hard-linked where the two share
        a filesystem, layers unpacked here."""
        manifest = other.read_blob(image.manifest_digest)
        doc = orjson.loads(manifest)
        for desc in (doc["config"], *doc.get("layers", [])):
            if self.has_blob(desc["digest"]):
                continue
            try:
                os.link(other.blob_path(desc["digest"]), self.blob_path(desc["digest"]))
            except FileExistsError:
                pass
            except OSError:
                self.put_blob_file(other.blob_path(desc["digest"]), expected=desc["digest"])
        return self.commit(manifest, image.repo_tags, image.repo_digests)

    def _image(self, record: dict[str, Any]) -> Image:
        spec = orjson.loads(self.read_blob(record["config_digest"]))
        return Image(id=record["id"], repo_tags=list(record["repo_tags"]),
                     repo_digests=list(record["repo_digests"]), config=spec.get("config") or {},
                     layer_dirs=[self.layer_dir(d) for d in record["diff_ids"]], size=record["size"],
                     manifest_digest=record["manifest_digest"], created=spec.get("created", ""),
                     diff_ids=list(record["diff_ids"]), spec=spec)

    @staticmethod
    def _name_of(ref: str) -> str:
        """The index's spelling of a reference (repo:tag, or repo@digest), "" for an id."""
        if reference.is_image_id(ref):
            return ""
        try:
            parsed = reference.parse(ref)
        except reference.InvalidReference:
            return ""
        return f"{parsed.name}@{parsed.digest}" if parsed.digest and not parsed.tag else str(parsed)

    def _find(self, images: dict[str, Any], ref: str) -> dict[str, Any] | None:
        if reference.is_image_id(ref):
            return images.get(ref if ref.startswith("sha256:") else f"sha256:{ref}")
        wanted = self._name_of(ref)
        parsed = reference.parse(ref) if wanted else None
        if parsed is not None and parsed.digest and parsed.tag:
            wanted = f"{parsed.name}@{parsed.digest}"  # a digest wins over a tag, as in containerd
        if wanted:
            for record in images.values():
                if wanted in record["repo_tags"] or wanted in record["repo_digests"]:
                    return record
        # A short id prefix, as docker and crictl accept (`ketch image rm 3f57d9401f8d`).
        hexpart = ref.removeprefix("sha256:")
        if len(hexpart) >= 4 and all(c in "0123456789abcdef" for c in hexpart):
            matches = [r for k, r in images.items() if k.removeprefix("sha256:").startswith(hexpart)]
            if len(matches) == 1:
                return matches[0]
        return None

    def resolve(self, ref: str) -> Image | None:
        """The local image `ref` names (a reference, an image id or a unique id prefix), or None."""
        record = self._find(self._read_index().get("images", {}), ref)
        if record is None:
            return None
        try:
            return self._image(record)
        except ImageNotFound:
            return None

    def list(self) -> list[Image]:
        return [self._image(r) for r in self._read_index().get("images", {}).values()]

    def tag(self, source: str, target: str) -> Image:
        record = self._find(self._read_index().get("images", {}), source)
        if record is None:
            raise ImageNotFound(f"image {source!r} not found")
        return self.commit(self.read_blob(record["manifest_digest"]), [target])

    def layers_in_use(self) -> set[str]:
        """Hex diff ids of this store's layers that an overlay mount on the machine uses as lowerdir."""
        prefix = str(self.root / "layers") + "/"
        used = set()
        try:
            mounts = Path("/proc/self/mounts").read_text().splitlines()
        except OSError:
            return used
        for line in mounts:
            fields = line.split()
            if len(fields) < 4 or fields[2] != "overlay":
                continue
            for option in fields[3].split(","):
                if option.startswith("lowerdir="):
                    used.update(p[len(prefix):] for p in option[9:].split(":") if p.startswith(prefix))
        return used

    def remove(self, ref: str, force: bool = False) -> tuple[list[str], str | None]:
        """Untag `ref`; the image goes when no name is left or `ref` is its id. Returns (untagged
        names, deleted id or None). An image a running container's root filesystem uses is not
        deleted (docker's conflict) unless `force`; its layers then stay until they are unmounted."""
        with self.locked():
            index = self._read_index(for_update=True)
            images = index.get("images", {})
            record = self._find(images, ref)
            if record is None:
                raise ImageNotFound(f"image {ref!r} not found")
            name = self._name_of(ref)
            by_name = name in record["repo_tags"] or name in record["repo_digests"]
            if by_name:
                untagged = [name]
                for key in ("repo_tags", "repo_digests"):
                    if name in record[key]:
                        record[key].remove(name)
            else:
                untagged = record["repo_tags"] + record["repo_digests"]
            deleted = None
            if not by_name or not (record["repo_tags"] or record["repo_digests"]):
                if not force and {_hex(d) for d in record["diff_ids"]} & self.layers_in_use():
                            raise ImageInUse(f"conflict: unable to delete {record['id'][7:19]} (must be forced) - "
                                     "image is being used by a running container")
                del images[record["id"]]
                deleted = record["id"]
            self._write_index(index)
            if deleted:
                self._sweep(index)
        return untagged, deleted

    def _sweep(self, index: dict[str, Any]) -> None:
        """Delete blobs, layers and usage marks no image references (the lock is held)."""
        images = index.get("images", {}).values()
        blobs = {_hex(d) for r in images for d in (r["manifest_digest"], r["config_digest"], *r["layers"])}
        layer_set = {_hex(d) for r in images for d in r["diff_ids"]} | self.layers_in_use()
        ids = {_hex(r["id"]) for r in images}
        for path in (self.root / "blobs" / "sha256").iterdir():
            if path.name not in blobs:
                path.unlink(missing_ok=True)
        for path in (self.root / "layers").iterdir():
            if path.name not in layer_set and path != self._empty_layer:
                shutil.rmtree(path, ignore_errors=True)
        for path in (self.root / "used").iterdir():
            if path.name not in ids:
                path.unlink(missing_ok=True)

    # ---- usage and garbage collection -------------------------------------------------------

    def last_used(self, image_id: str) -> float:
        try:
            return (self.root / "used" / _hex(image_id)).stat().st_mtime
        except FileNotFoundError:
            record = self._read_index().get("images", {}).get(image_id, {})
            return record.get("loaded_at", 0.0)

    def mark_used(self, image_id: str) -> None:
        (self.root / "used" / _hex(image_id)).touch()

    def disk_usage(self) -> int:
        """Bytes the store's blobs and layers occupy (what the image GC frees)."""
        total = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
        return total

    def filesystem_stats(self) -> tuple[int, int]:
        """(capacity, available) bytes of the filesystem holding the store: the kubelet's imagefs."""
        st = os.statvfs(self.root)
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize

    def prune(self, keep: set[str], target_bytes: int) -> list[str]:
        """Remove images not in `keep` (ids in use by containers), least recently used first,
        until their sizes add up to `target_bytes` (the kubelet's bytes to free). Returns the ids."""
        removed: list[str] = []
        freed = 0
        in_use = self.layers_in_use()
        candidates = sorted((i for i in self.list() if i.id not in keep and not {_hex(d) for d in i.diff_ids} & in_use),
                            key=lambda i: self.last_used(i.id))
        for image in candidates:
            if freed >= target_bytes:
                break
            with contextlib.suppress(ImageNotFound, ImageInUse):
                self.remove(image.id)
                removed.append(image.id)
                freed += image.size
        return removed

    # ---- container root filesystems ---------------------------------------------------------

    def mount_rootfs(self, image: Image, target_dir: Path | str, work_dir_parent: Path | str) -> None:
        """Mount `image` at `target_dir` as overlayfs: its layers read-only (top first), the
        container's writes in `work_dir_parent`/upper (with `work_dir_parent`/work beside it)."""
        self.mount_layers(image.layer_dirs, target_dir, work_dir_parent)
        with contextlib.suppress(OSError):
            self.mark_used(image.id)

    def mount_layers(self, layer_dirs: list[Path], target_dir: Path | str, work_dir_parent: Path | str,
                     options: str = "") -> None:
        target, parent = Path(target_dir), Path(work_dir_parent)
        upper, work = parent / "upper", parent / "work"
        for d in (target, upper, work):
            d.mkdir(parents=True, exist_ok=True)
        lowers = [str(d) for d in reversed(layer_dirs)] or [str(self._empty_layer)]
        for d in lowers:
            if not os.path.isdir(d):
                raise ImageError(f"layer {d} is missing from the image store")
        extra = f",{options}" if options else ""
        _mount_overlay(target, f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}{extra}")

    @staticmethod
    def unmount_rootfs(target_dir: Path | str) -> None:
        try:
            mounts.unmount(target_dir)
        except OSError as e:
            raise ImageError(f"unmount {target_dir}: {os.strerror(e.errno)}") from None

    async def pull(self, ref: str, auth: tuple[str, str] | None = None, progress: Progress | None = None,
                   plain_http: bool | None = None, insecure: bool = False) -> Image:
        """Pull `ref` from its registry into the store (ImagePullError on failure)."""
        from .registry import pull
        return await pull(self, ref, auth=auth, progress=progress, plain_http=plain_http, insecure=insecure)
