"""The pure helpers behind the PV binder, DefaultStorageClass and the StatefulSet controller."""
from __future__ import annotations

from ketch.api import storageclass
from ketch.controllers import history
from ketch.controllers.persistentvolume import bound_to, mismatch
from ketch.controllers.statefulset import parent_and_ordinal, scaled


def _claim(**spec):
    return {"metadata": {"name": "c", "namespace": "n", "uid": "u1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, **spec}}


def _volume(size="1Gi", modes=("ReadWriteOnce",), **spec):
    return {"metadata": {"name": "v"}, "spec": {"capacity": {"storage": size}, "accessModes": list(modes), **spec}}


def test_claim_class_prefers_the_beta_annotation_and_empty_means_none():
    claim = _claim(storageClassName="fast")
    assert storageclass.claim_class(claim) == "fast"
    claim["metadata"]["annotations"] = {storageclass.BETA_CLASS_ANNOTATION: "solidstate"}
    assert storageclass.claim_class(claim) == "solidstate"
    assert not storageclass.class_unset(claim)
    assert storageclass.class_unset(_claim())
    assert not storageclass.class_unset(_claim(storageClassName=""))


def test_default_class_is_the_newest_default():
    def sc(name, ts, default=True):
        ann = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
        return {"metadata": {"name": name, "creationTimestamp": ts, "annotations": ann}}
    assert storageclass.default_class([sc("a", "2026-01-01T00:00:00Z"), sc("b", "2026-02-01T00:00:00Z"),
                                       sc("c", "2026-03-01T00:00:00Z", default=False)]) == "b"
    assert storageclass.default_class([sc("c", "2026-03-01T00:00:00Z", default=False)]) is None


def test_volume_mismatches_read_as_upstream():
    assert mismatch(_volume(), _claim()) == ""
    assert mismatch(_volume("500Mi"), _claim()) == "requested PV is too small"
    assert mismatch(_volume(storageClassName="x"), _claim()) == "storageClassName does not match"
    assert mismatch(_volume(modes=("ReadOnlyMany",)), _claim()) == "incompatible accessMode"
    assert mismatch(_volume(volumeMode="Block"), _claim()) == "incompatible volumeMode"
    assert mismatch(_volume("2Gi", modes=("ReadWriteOnce", "ReadOnlyMany")), _claim()) == ""


def test_claim_ref_binds_by_name_then_uid():
    assert bound_to(_volume(claimRef={"namespace": "n", "name": "c"}), _claim())
    assert bound_to(_volume(claimRef={"namespace": "n", "name": "c", "uid": "u1"}), _claim())
    assert not bound_to(_volume(claimRef={"namespace": "n", "name": "c", "uid": "u2"}), _claim())
    assert not bound_to(_volume(claimRef={"namespace": "m", "name": "c"}), _claim())


def test_revision_hash_is_stable_safe_and_moves_with_collisions():
    data = history.template_patch({"spec": {"template": {"metadata": {"labels": {"a": "b"}}}}})
    assert data == {"spec": {"template": {"metadata": {"labels": {"a": "b"}}, "$patch": "replace"}}}
    h0 = history.revision_hash(data, 0)
    assert h0 == history.revision_hash(data, 0)
    assert h0 != history.revision_hash(data, 1)
    assert set(h0) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert history.revision_name("web", h0) == f"web-{h0}"
    assert history.template_of({"data": data}) == {"metadata": {"labels": {"a": "b"}}}


def test_ordinals_and_max_unavailable():
    assert parent_and_ordinal({"metadata": {"name": "web-12"}}) == ("web", 12)
    assert parent_and_ordinal({"metadata": {"name": "my-db-0"}}) == ("my-db", 0)
    assert parent_and_ordinal({"metadata": {"name": "web"}}) == ("", -1)
    assert scaled(None, 10) == 1 and scaled(3, 10) == 3 and scaled("25%", 10) == 3 and scaled("1%", 10) == 1
