"""Placement rules that are part of the API's meaning, shared by the scheduler and the controllers
that reason about placement (DaemonSet eligibility, taint eviction): whether a toleration
tolerates a taint, and whether a node matches a nodeSelector term."""
from __future__ import annotations

from dataclasses import dataclass

from . import labels as labelsel


def tolerates(toleration: dict, taint: dict) -> bool:
    """v1 Toleration.ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    op = toleration.get("operator") or "Equal"
    if key and key != taint.get("key"):
        return False
    if op == "Exists":
        return True
    if not key:  # an empty key only makes sense with Exists
        return False
    return (toleration.get("value") or "") == (taint.get("value") or "")


def _node_selector_requirement(expr: dict, field_mode: bool = False) -> labelsel.Requirement | None:
    op = {"In": labelsel.IN, "NotIn": labelsel.NOT_IN, "Exists": labelsel.EXISTS,
          "DoesNotExist": labelsel.DOES_NOT_EXIST, "Gt": labelsel.GREATER_THAN,
          "Lt": labelsel.LESS_THAN}.get(expr.get("operator") or "")
    if op is None or (field_mode and op not in (labelsel.IN, labelsel.NOT_IN)):
        return None
    return labelsel.Requirement(expr.get("key") or "", op, tuple(expr.get("values") or ()))


@dataclass
class NodeSelectorTerm:
    """One term of a nodeSelector: expressions on labels and fields, ANDed."""
    labels: tuple[labelsel.Requirement, ...]
    fields: tuple[labelsel.Requirement, ...]
    valid: bool

    @classmethod
    def parse(cls, term: dict) -> "NodeSelectorTerm":
        exprs = [_node_selector_requirement(e) for e in term.get("matchExpressions") or ()]
        fields = [_node_selector_requirement(e, True) for e in term.get("matchFields") or ()]
        valid = None not in exprs and None not in fields and bool(exprs or fields)
        return cls(tuple(e for e in exprs if e), tuple(f for f in fields if f), valid)

    def matches(self, node_labels: dict, node_name: str) -> bool:
        if not self.valid:
            return False
        if any(not r.matches(node_labels) for r in self.labels):
            return False
        return all(r.matches({"metadata.name": node_name}) for r in self.fields)
