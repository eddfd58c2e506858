"""Bodies in and out: media types, size limits, JSON and YAML, and the response encodings
(plain objects, Tables, PartialObjectMetadata) a client negotiates with `Accept`."""
from __future__ import annotations

import json
from dataclasses import dataclass

import orjson
import yaml

from ..api import errors, protobuf

MAX_BODY = 3 * 1024 * 1024
JSON = "application/json"
YAML = "application/yaml"
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}


class _Loader(yaml.SafeLoader):
    """YAML as Kubernetes reads it (sigs.k8s.io/yaml): YAML 1.1 scalars, but timestamps stay strings."""


_Loader.yaml_implicit_resolvers = {k: [r for r in v if r[0] != "tag:yaml.org,2002:timestamp"]
                                   for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def parse_body(raw: bytes, content_type: str, *, patch: bool = False):
    """Decode a request body. Returns the decoded document."""
    if len(raw) > MAX_BODY:
        raise errors.too_large()
    mt = media_type(content_type)
    if patch:
        if mt not in PATCH_TYPES:
            raise errors.ApiError(415, "UnsupportedMediaType",
                                  "the body of the request was in an unknown format - accepted media types "
                                  "include: application/json-patch+json, application/merge-patch+json, "
                                  "application/apply-patch+yaml, application/strategic-merge-patch+json")
        if PATCH_TYPES[mt] == "apply":
            return load_yaml(raw)
        return load_json(raw)
    if mt in ("", JSON, "*/*"):
        return load_json(raw)
    if mt in (YAML, "application/x-yaml", "text/yaml"):
        return load_yaml(raw)
    if mt == protobuf.MEDIA_TYPE:
        try:
            return protobuf.decode(raw)[0]
        except protobuf.ProtobufError as e:
            raise errors.bad_request(str(e)) from None
    raise errors.unsupported_media_type(mt)


def load_json(raw: bytes):
    try:
        return orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError as e:
        # Kubernetes decoders accept YAML where JSON was announced only if it is valid JSON;
        # report the decode error as upstream does.
        raise errors.bad_request(f"error decoding from json: {_json_error(e)}") from None


def _json_error(e: orjson.JSONDecodeError) -> str:
    return f"invalid character at offset {e.pos}: {e.msg}"


def load_yaml(raw: bytes):
    try:
        docs = list(yaml.load_all(raw, Loader=_Loader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise errors.bad_request(f"error converting YAML to JSON: yaml: {where}{getattr(e, 'problem', None) or e}") from None
    docs = [d for d in docs if d is not None]
    if len(docs) > 1:
        raise errors.bad_request("error converting YAML to JSON: the request body has more than one document")
    return docs[0] if docs else None


@dataclass
class Accept:
    """What representation the client asked for."""
    yaml: bool = False
    table: bool = False
    partial_metadata: bool = False
    aggregated_discovery: str = ""   # "v2" or "v2beta1" when asked


def negotiate(header: str | None) -> Accept:
    """Pick the first acceptable representation from an Accept header, in the client's order."""
    if not header:
        return Accept()
    unsupported = []
    for part in header.split(","):
        params = [p.strip() for p in part.split(";")]
        mt = params[0].lower()
        opts = dict(p.split("=", 1) for p in params[1:] if "=" in p)
        as_ = opts.get("as", "")
        if mt in ("application/json", "*/*", "application/*", "application/yaml", ""):
            is_yaml = mt == "application/yaml"
            if not as_:
                return Accept(yaml=is_yaml)
            if as_ == "Table" and opts.get("g") == "meta.k8s.io" and opts.get("v") in ("v1", "v1beta1"):
                return Accept(yaml=is_yaml, table=True)
            if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList") and opts.get("g") == "meta.k8s.io":
                return Accept(yaml=is_yaml, partial_metadata=True)
            if as_ == "APIGroupDiscoveryList" and opts.get("g") == "apidiscovery.k8s.io" and \
                    opts.get("v") in ("v2", "v2beta1"):
                return Accept(aggregated_discovery=opts["v"])
        unsupported.append(part.strip())
    # Protobuf-only (or otherwise unknown) clients: answer JSON only if they accept it.
    if any(p.startswith("application/vnd.kubernetes.protobuf") for p in unsupported) and len(unsupported) == 1:
        return Accept()
    raise errors.not_acceptable("only the following media types are accepted: application/json, application/yaml, "
                                "application/vnd.kubernetes.protobuf")


def dumps(obj, accept: Accept) -> tuple[bytes, str]:
    if accept.yaml:
        return yaml.safe_dump(obj, default_flow_style=False, sort_keys=False).encode(), YAML
    return json_bytes(obj), JSON


def json_bytes(obj) -> bytes:
    """orjson, or the standard library for what orjson refuses (integers beyond 64 bits from YAML)."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, separators=(",", ":")).encode()
