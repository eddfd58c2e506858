"""Loading images from files: docker-archive (`docker save`: manifest.json + repositories) and
OCI image layouts (a directory with oci-layout and index.json) or OCI archives (a tar of one)."""
from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import orjson

from . import layers, reference
from .errors import ImageError
from .store import (MEDIA_OCI_CONFIG, MEDIA_OCI_LAYER, MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_MANIFEST, Image,
                    ImageStore, canonical_json)

INDEX_MEDIA_TYPES = {"application/vnd.oci.image.index.v1+json",
                     "application/vnd.docker.distribution.manifest.list.v2+json"}
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


def load(store: ImageStore, path: Path | str, name: str | None = None) -> list[tuple[Image, list[str]]]:
    """Load every image of the archive or layout at `path`; returns each with the names the
    archive gave it. `name` names an OCI image whose index carries only a tag (or nothing)."""
    path = Path(path)
    if path.is_dir():
        return _load_layout(store, path, name)
    work = Path(tempfile.mkdtemp(dir=store.root / "tmp", prefix="load-"))
    try:
        try:
            with tarfile.open(path, "r:*") as tar:
                tar.extractall(work, filter="data")
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ImageError(f"{path}: not an image archive: {e}") from None
        if (work / "manifest.json").exists():
            return _load_docker_archive(store, work)
        if (work / "index.json").exists():
            return _load_layout(store, work, name)
        raise ImageError(f"{path}: neither a docker archive (manifest.json) nor an OCI archive (index.json)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _load_docker_archive(store: ImageStore, work: Path) -> list[tuple[Image, list[str]]]:
    loaded = []
    for entry in orjson.loads((work / "manifest.json").read_bytes()):
        config_bytes = _read_inside(work, entry["Config"]).read_bytes()
        config_digest = store.put_blob_bytes(config_bytes)
        descriptors = []
        for layer_name in entry.get("Layers") or []:
            layer_path = _read_inside(work, layer_name)
            with open(layer_path, "rb") as f:
                compressed = f.read(2) == layers.GZIP_MAGIC
            digest = store.put_blob_file(layer_path)
            descriptors.append({"mediaType": MEDIA_OCI_LAYER_GZIP if compressed else MEDIA_OCI_LAYER,
                                "digest": digest, "size": layer_path.stat().st_size})
        manifest = {"schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST,
                    "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
                    "layers": descriptors}
        names = _valid_names(entry.get("RepoTags") or [])
        loaded.append((store.commit(canonical_json(manifest), names=names), names))
    return loaded


def _load_layout(store: ImageStore, layout: Path, name: str | None) -> list[tuple[Image, list[str]]]:
    if not (layout / "oci-layout").exists() or not (layout / "index.json").exists():
        raise ImageError(f"{layout}: not an OCI image layout (oci-layout and index.json expected)")
    loaded = []
    for desc in orjson.loads((layout / "index.json").read_bytes()).get("manifests", []):
        annotations = desc.get("annotations") or {}
        manifest_desc = _platform_manifest(layout, desc)
        manifest_bytes = _layout_blob(layout, manifest_desc["digest"]).read_bytes()
        manifest = orjson.loads(manifest_bytes)
        for blob in (manifest["config"], *manifest.get("layers", [])):
            if not store.has_blob(blob["digest"]):
                store.put_blob_file(_layout_blob(layout, blob["digest"]), expected=blob["digest"])
        names = _valid_names([_layout_name(annotations, name)])
        loaded.append((store.commit(manifest_bytes, names=names), names))
    return loaded


def _layout_name(annotations: dict[str, str], name: str | None) -> str:
    """containerd's full-name annotation, else ref.name when it is a reference (skopeo writes
    `name:tag`); a bare tag (`latest`) gets `name`'s repository."""
    if annotations.get(CONTAINERD_NAME):
        return annotations[CONTAINERD_NAME]
    ref_name = annotations.get(REF_NAME, "")
    if ref_name and (":" in ref_name or "/" in ref_name or "@" in ref_name):
        return ref_name
    if name:
        parsed = reference.parse(name, default_tag=False)
        return str(parsed.with_tag(ref_name)) if ref_name else str(reference.parse(name))
    return ""


def _platform_manifest(layout: Path, desc: dict[str, Any]) -> dict[str, Any]:
    """Follow nested indexes down to the linux/amd64 manifest (or the only one)."""
    while desc.get("mediaType") in INDEX_MEDIA_TYPES:
        index = orjson.loads(_layout_blob(layout, desc["digest"]).read_bytes())
        desc = choose_platform(index.get("manifests", []))
    return desc


def choose_platform(manifests: list[dict[str, Any]], os_name: str = "linux",
                    architecture: str = "amd64") -> dict[str, Any]:
    for m in manifests:
        platform = m.get("platform") or {}
        if platform.get("os") == os_name and platform.get("architecture") == architecture:
            return m
    if len(manifests) == 1 and not manifests[0].get("platform"):
        return manifests[0]
    raise ImageError(f"no match for platform in manifest: not found ({os_name}/{architecture})")


def _layout_blob(layout: Path, digest: str) -> Path:
    algo, _, hexpart = digest.partition(":")
    path = layout / "blobs" / algo / hexpart
    if not path.is_file():
        raise ImageError(f"blob {digest} missing from the OCI layout {layout}")
    return path


def _read_inside(root: Path, name: str) -> Path:
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        raise ImageError(f"archive entry {name!r} is missing")
    return path


def _valid_names(names: list[str]) -> list[str]:
    good = []
    for n in names:
        if not n:
            continue
        try:
            good.append(str(reference.parse(n)))
        except reference.InvalidReference:
            raise ImageError(f"archive names an invalid reference {n!r}") from None
    return good
