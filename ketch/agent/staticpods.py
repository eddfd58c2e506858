"""Static pods: pods the agent runs from manifest files (`--pod-manifest-path`), API server or not,
as the kubelet's file source does.

Each file holds one Pod (YAML or JSON). The pod runs as `<name>-<node>`, with uid = the hash of
its manifest (so an edit is a new pod), the annotations kubernetes.io/config.{source,hash,seen},
and the API's defaults. The API sees it through a mirror pod: same name, the annotation
kubernetes.io/config.mirror = the hash, owned by the Node; the kubelet writes the static pod's
status there, recreates the mirror when someone deletes it (the containers keep running), and
deletes it when the file goes away.
"""
from __future__ import annotations

import copy
import hashlib
import logging
import time
from pathlib import Path

import orjson
import yaml

from ..api import defaults, kinds

log = logging.getLogger("ketch.agent.static")

CONFIG_SOURCE = "kubernetes.io/config.source"
CONFIG_HASH = "kubernetes.io/config.hash"
CONFIG_SEEN = "kubernetes.io/config.seen"
CONFIG_MIRROR = "kubernetes.io/config.mirror"
SCAN_PERIOD = 20.0   # the kubelet's fileCheckFrequency
SUFFIXES = (".yaml", ".yml", ".json")


def is_mirror(pod: dict | None) -> bool:
    return pod is not None and CONFIG_MIRROR in (pod["metadata"].get("annotations") or {})


def _uuid_from(digest: str) -> str:
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def static_pod(manifest: dict, node_name: str, seen: str) -> dict:
    """The pod the kubelet runs for one manifest (defaulted, named and hashed as upstream)."""
    pod = copy.deepcopy(manifest)
    meta = pod.setdefault("metadata", {})
    meta["name"] = f"{meta.get('name', '')}-{node_name}"
    meta["namespace"] = meta.get("namespace") or "default"
    pod.setdefault("spec", {})["nodeName"] = node_name
    pod["apiVersion"], pod["kind"] = "v1", "Pod"
    digest = hashlib.md5(orjson.dumps(pod, option=orjson.OPT_SORT_KEYS)).hexdigest()
    meta["uid"] = _uuid_from(digest)
    meta["annotations"] = {**(meta.get("annotations") or {}), CONFIG_SOURCE: "file", CONFIG_HASH: digest,
                           CONFIG_SEEN: seen}
    pod["spec"].setdefault("tolerations", []).append({"operator": "Exists", "effect": "NoExecute"})
    defaults.apply_defaults(pod, kinds.storage_resource(kinds.by_kind("", "v1", "Pod")).schema)
    pod["status"] = {"phase": "Pending", "qosClass": defaults.pod_qos_class(pod)}
    return pod


def mirror_pod(pod: dict, node: dict) -> dict:
    """The API's copy of a static pod."""
    meta = pod["metadata"]
    annotations = {**meta["annotations"], CONFIG_MIRROR: meta["annotations"][CONFIG_HASH]}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": meta.get("labels") or {},
                         "annotations": annotations,
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node["metadata"]["name"],
                                              "uid": node["metadata"]["uid"], "controller": True}]},
            "spec": pod["spec"]}


class StaticPods:
    """The manifests of one directory, re-read when they change."""

    def __init__(self, directory: Path, node_name: str):
        self.directory = Path(directory)
        self.node_name = node_name
        self.pods: dict[str, dict] = {}          # key (namespace/name) -> pod
        self._files: dict[Path, tuple[float, int, str]] = {}   # path -> (mtime, size, key)

    def scan(self) -> set[str]:
        """Re-read the directory; returns the keys whose pod appeared, changed or went."""
        changed: set[str] = set()
        seen: set[Path] = set()
        paths = sorted(p for p in self.directory.glob("*") if p.suffix in SUFFIXES and not p.name.startswith("."))
        for path in paths:
            seen.add(path)
            try:
                st = path.stat()
            except OSError:
                continue
            known = self._files.get(path)
            if known is not None and known[:2] == (st.st_mtime, st.st_size):
                continue
            pod = self._read(path)
            if known is not None:
                self.pods.pop(known[2], None)
                changed.add(known[2])
            if pod is None:
                self._files[path] = (st.st_mtime, st.st_size, "")
                continue
            key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
            self.pods[key] = pod
            self._files[path] = (st.st_mtime, st.st_size, key)
            changed.add(key)
        for path in [p for p in self._files if p not in seen]:
            key = self._files.pop(path)[2]
            if key:
                self.pods.pop(key, None)
                changed.add(key)
        return changed

    def _read(self, path: Path) -> dict | None:
        try:
            text = path.read_text()
            manifest = orjson.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as e:
            log.warning("static pod %s: %s", path, e)
            return None
        if not isinstance(manifest, dict) or manifest.get("kind") != "Pod" or \
                not (manifest.get("metadata") or {}).get("name"):
            log.warning("static pod %s: not a Pod with a name", path)
            return None
        seen = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 1_000_000_000:09d}Z"
        return static_pod(manifest, self.node_name, seen)
