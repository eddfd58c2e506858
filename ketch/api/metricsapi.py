"""The metrics.k8s.io/v1beta1 types (NodeMetrics, PodMetrics and their lists), which upstream's
OpenAPI release lacks because metrics-server, not the apiserver, publishes them. Served by
`ketch.apiserver.metrics`; installed with the legacy definitions (`legacy.install`)."""
from __future__ import annotations

from . import schema

GROUP = "metrics.k8s.io"

_DEF = "io.k8s.metrics.pkg.apis.metrics.v1beta1."
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_USAGE = {"type": "object", "additionalProperties": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity"}}


def _kind_def(kind: str, description: str, props: dict, required: list[str]) -> dict:
    return {"description": description, "type": "object", "required": required,
            "properties": {"apiVersion": {"type": "string", "description": "APIVersion defines the versioned "
                                          "schema of this representation of an object."},
                           "kind": {"type": "string", "description": "Kind is a string value representing the "
                                    "REST resource this object represents."}, **props},
            "x-kubernetes-group-version-kind": [{"group": GROUP, "version": "v1beta1", "kind": kind}]}


def _window_props() -> dict:
    return {"timestamp": {"$ref": f"#/definitions/{_META}Time", "description": "The following fields define time "
                          "interval from which metrics were collected from the interval [Timestamp-Window, Timestamp]."},
            "window": {"type": "string", "description": "Duration of the window the usage is computed over."}}


DEFINITIONS = {
    _DEF + "ContainerMetrics": {
        "description": "ContainerMetrics sets resource usage metrics of a container.", "type": "object",
        "required": ["name", "usage"],
        "properties": {"name": {"type": "string", "description": "Container name corresponding to the one from "
                                "pod.spec.containers."},
                       "usage": {**_USAGE, "description": "The memory usage is the memory working set."}}},
    _DEF + "NodeMetrics": _kind_def("NodeMetrics", "NodeMetrics sets resource usage metrics of a node.", {
        "metadata": {"$ref": f"#/definitions/{_META}ObjectMeta", "description": "Standard object's metadata."},
        **_window_props(),
        "usage": {**_USAGE, "description": "The memory usage is the memory working set."}},
        ["timestamp", "window", "usage"]),
    _DEF + "PodMetrics": _kind_def("PodMetrics", "PodMetrics sets resource usage metrics of a pod.", {
        "metadata": {"$ref": f"#/definitions/{_META}ObjectMeta", "description": "Standard object's metadata."},
        **_window_props(),
        "containers": {"type": "array", "items": {"$ref": f"#/definitions/{_DEF}ContainerMetrics"},
                       "description": "Metrics for all containers are collected within the same time window."}},
        ["timestamp", "window", "containers"]),
}
for _kind in ("NodeMetrics", "PodMetrics"):
    DEFINITIONS[f"{_DEF}{_kind}List"] = _kind_def(f"{_kind}List", f"{_kind}List is a list of {_kind}.", {
        "metadata": {"$ref": f"#/definitions/{_META}ListMeta", "description": "Standard list metadata."},
        "items": {"type": "array", "items": {"$ref": f"#/definitions/{_DEF}{_kind}"},
                  "description": "List of " + _kind.replace("Metrics", " metrics") + "."}}, ["items"])


def install() -> None:
    """Publish the definitions in `ketch.api.schema` (OpenAPI, `kubectl explain nodemetrics`). Idempotent."""
    if not DEFINITIONS.keys() <= schema.definitions().keys():
        schema.add_definitions(DEFINITIONS)
