"""The book-era decoder's case-insensitive field names, kept so the book's manifests work verbatim.

Kubernetes decoded JSON with Go's encoding/json semantics until 1.23, which match a key to a field
regardless of case, so the book bundle's `clusterip: None` made a headless Service. Today's
apiserver is case-sensitive and strict decoding rejects such a key. ketch renames a key that
matches exactly one schema field case-insensitively — and only when the correctly spelled field is
absent — before decoding, so these manifests mean what the book says. Correctly spelled input is
untouched. (Recorded in docs/design.md.)
"""
from __future__ import annotations

from . import schema


def fold_case(obj: dict, node: schema.Node) -> None:
    """Rename, in place, the keys of one object of `node`'s type that spell a field in another case."""
    props = node.properties
    if not obj.keys() <= props.keys():
        lowered = node.lowered_field_names
        for key in list(obj):
            if key in props:
                continue
            matches = lowered.get(key.lower(), ())
            if len(matches) == 1 and matches[0] not in obj:
                obj[matches[0]] = obj.pop(key)
