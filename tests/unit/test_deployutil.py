"""Deployment arithmetic as upstream's deploymentutil computes it."""
from __future__ import annotations

import pytest

from ketch.controllers import deployutil as du


def deployment(replicas: int, surge="25%", unavailable="25%", strategy: str = "RollingUpdate") -> dict:
    spec = {"replicas": replicas, "strategy": {"type": strategy}}
    if strategy == "RollingUpdate":
        spec["strategy"]["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {"metadata": {"name": "d", "generation": 1, "annotations": {}}, "spec": spec, "status": {}}


def rs(name: str, replicas: int, created: str = "2026-01-01T00:00:00Z", **annotations) -> dict:
    return {"metadata": {"name": name, "uid": name, "creationTimestamp": created, "annotations": dict(annotations)},
            "spec": {"replicas": replicas}, "status": {}}


@pytest.mark.parametrize("value,total,up,want", [
    ("25%", 10, True, 3), ("25%", 10, False, 2), ("25%", 3, True, 1), ("25%", 3, False, 0),
    (2, 10, True, 2), ("0%", 10, True, 0), ("100%", 7, False, 7), ("5", 10, True, 5),
])
def test_scaled_value_rounds_like_upstream(value, total, up, want):
    assert du.scaled_value(value, total, up) == want


def test_fenceposts_never_both_zero():
    assert du.resolve_fenceposts(deployment(3, "25%", "25%")) == (1, 0)
    assert du.resolve_fenceposts(deployment(1, 0, "10%")) == (0, 1)
    assert du.max_unavailable(deployment(3, 5, 5)) == 3
    assert du.max_surge(deployment(3, strategy="Recreate")) == 0
    assert du.max_unavailable(deployment(0)) == 0
    with pytest.raises(ValueError):
        du.scaled_value("lots", 10, True)


def test_hash_uses_the_safe_alphabet_and_the_collision_count():
    template = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    h0, h1 = du.compute_hash(template, None), du.compute_hash(template, 1)
    assert h0 != h1 and h0 == du.compute_hash(dict(reversed(list(template.items()))), None)
    assert set(h0 + h1) <= set("456789bcdf")  # decimal digits through SafeEncodeString
    assert du.fnv32a(b"") == 0x811C9DC5 and du.fnv32a(b"a") == 0xE40C292C


def test_equal_ignore_hash():
    a = {"metadata": {"labels": {"app": "x", du.HASH_LABEL: "abc"}}, "spec": {"containers": []}}
    b = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}}
    assert du.equal_ignore_hash(a, b)
    assert not du.equal_ignore_hash(a, {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": []}})


def test_revision_annotations_and_history():
    d = deployment(3)
    d["metadata"]["annotations"] = {"kubernetes.io/change-cause": "why", du.LAST_APPLIED: "{}", du.REVISION: "9"}
    new = rs("new", 0)
    assert du.set_new_rs_annotations(d, new, 1, exists=False)
    assert new["metadata"]["annotations"] == {"kubernetes.io/change-cause": "why", du.REVISION: "1",
                                              du.DESIRED_REPLICAS: "3", du.MAX_REPLICAS: "4"}
    # Rolling back to it raises its revision and remembers the old one.
    assert du.set_new_rs_annotations(d, new, 4, exists=True)
    assert du.set_new_rs_annotations(d, new, 6, exists=True)
    assert new["metadata"]["annotations"][du.REVISION] == "6"
    assert new["metadata"]["annotations"][du.REVISION_HISTORY] == "1,4"
    assert not du.set_new_rs_annotations(d, new, 5, exists=True)  # never lowered
    assert du.last_revision([rs("a", 0, **{du.REVISION: "2"}), rs("b", 0, **{du.REVISION: "7"}),
                             rs("c", 0, **{du.REVISION: "5"})]) == 5


def test_proportions_when_scaled_mid_rollout():
    d = deployment(20, 3, 2)
    d["status"] = {"replicas": 13}
    old = rs("old", 8, **{du.MAX_REPLICAS: "13"})
    new = rs("new", 5, **{du.MAX_REPLICAS: "13"})
    assert du.proportion(old, d, 10, 0) == 6
    assert du.proportion(new, d, 10, 6) == 4
    down = deployment(5, 3, 2)
    assert du.proportion(old, down, -5, 0) == -3  # 8 * 8/13 = 4.9 -> 5, but at most -5 in all
    assert du.proportion(rs("empty", 0), d, 10, 0) == 0


def test_active_or_latest_and_saturation():
    newer = rs("newer", 0, "2026-01-02T00:00:00Z")
    older = rs("older", 0, "2026-01-01T00:00:00Z")
    assert du.find_active_or_latest(None, [older, newer]) is newer
    live = rs("live", 2)
    assert du.find_active_or_latest(newer, [live, older]) is live
    assert du.find_active_or_latest(rs("n", 1), [live]) is None
    d = deployment(3)
    full = rs("full", 3, **{du.DESIRED_REPLICAS: "3"})
    full["status"] = {"availableReplicas": 3}
    assert du.is_saturated(d, full) and not du.is_saturated(d, rs("x", 3))


def test_conditions_keep_transition_time_for_the_same_status():
    status: dict = {}
    du.set_condition(status, {**du.new_condition("Progressing", "True", du.NEW_RS_REASON, "m"),
                               "lastTransitionTime": "T1"})
    du.set_condition(status, {**du.new_condition("Progressing", "True", du.RS_UPDATED_REASON, "m2"),
                               "lastTransitionTime": "T2"})
    [cond] = status["conditions"]
    assert cond["reason"] == du.RS_UPDATED_REASON and cond["lastTransitionTime"] == "T1"
    du.set_condition(status, du.new_condition("Progressing", "False", du.TIMED_OUT_REASON, "late"))
    assert status["conditions"][0]["lastTransitionTime"] != "T1"
