"""Server-side apply and managedFields on realistic Deployments, Services and Pods."""
from __future__ import annotations

import copy
import json

import pytest

from ketch.api import apply, schema
from ketch.api.errors import ApiError
from ketch.api.fieldpath import FieldSet, field_element, key_element, path_string, value_element

DEPLOYMENT = schema.node("io.k8s.api.apps.v1.Deployment")
SERVICE = schema.node("io.k8s.api.core.v1.Service")
POD = schema.node("io.k8s.api.core.v1.Pod")
T0, T1, T2, T3 = ("2026-12-01T18:00:00Z", "2026-12-01T18:01:00Z", "2026-12-01T18:02:00Z", "2026-12-01T18:03:00Z")
STATUS = [("status",)]


def config(replicas: int | None = 2, image: str = "nginx:1.25", env: list | None = None, **template_spec) -> dict:
    """An applied configuration, as a user writes it for `kubectl apply --server-side`."""
    nginx = {"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}
    if env is not None:
        nginx["env"] = env
    spec = {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [nginx], **template_spec}}}
    if replicas is not None:
        spec = {"replicas": replicas, **spec}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}}, "spec": spec}


def stored(obj: dict) -> dict:
    """What the server would persist: identity fields set (defaulting is not this module's job)."""
    obj = copy.deepcopy(obj)
    obj["metadata"].update(uid="2f7c4b8e", resourceVersion="1", creationTimestamp=T0)
    return obj


def ssa(live, applied, manager="alice", force=False, now=T1, **kw):
    return apply.server_side_apply(live, applied, DEPLOYMENT, manager, force, "apps/v1", now, **kw)


def entries(obj: dict) -> list[tuple]:
    return [(e.get("manager"), e["operation"], e["apiVersion"], e.get("time"), e.get("subresource"))
            for e in obj["metadata"].get("managedFields", [])]


def fields_of(obj: dict, manager: str, operation: str | None = None) -> dict:
    for e in obj["metadata"]["managedFields"]:
        if e.get("manager") == manager and operation in (None, e["operation"]):
            return e["fieldsV1"]
    raise KeyError(manager)


# ---------------------------------------------------------------------------------------------
# FieldsV1


def test_fields_v1_round_trip_and_ordering():
    name = field_element("name")
    port = key_element({"protocol": "TCP", "containerPort": 80})
    fields = FieldSet([
        (field_element("spec"), field_element("replicas")),
        (field_element("metadata"), field_element("finalizers"), value_element("example.com/x")),
        (field_element("spec"), field_element("ports"), port),
        (field_element("spec"), field_element("ports"), port, name),
    ])
    encoded = fields.to_fields_v1()
    assert json.dumps(encoded, separators=(",", ":")) == (
        '{"f:metadata":{"f:finalizers":{"v:\\"example.com/x\\"":{}}},'
        '"f:spec":{"f:ports":{"k:{\\"containerPort\\":80,\\"protocol\\":\\"TCP\\"}":{".":{},"f:name":{}}},'
        '"f:replicas":{}}}')
    assert FieldSet.from_fields_v1(encoded) == fields
    assert path_string((field_element("spec"), field_element("ports"), port, name)) == \
        '.spec.ports[containerPort=80,protocol="TCP"].name'


# ---------------------------------------------------------------------------------------------
# managedFields of ordinary writes


CREATED = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "nginx", "namespace": "default", "labels": {"app": "nginx"}},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "nginx"}}, "progressDeadlineSeconds": 600,
             "revisionHistoryLimit": 10,
             "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
             "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {
                 "containers": [{"name": "nginx", "image": "nginx", "imagePullPolicy": "Always", "resources": {},
                                 "terminationMessagePath": "/dev/termination-log",
                                 "terminationMessagePolicy": "File",
                                 "ports": [{"containerPort": 80, "protocol": "TCP"}]}],
                 "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                 "securityContext": {}, "terminationGracePeriodSeconds": 30}}},
    "status": {}}

# What `kubectl create deployment nginx --image=nginx --port=80` shows with --show-managed-fields.
CREATED_FIELDS = {
    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
    "f:spec": {
        "f:progressDeadlineSeconds": {}, "f:replicas": {}, "f:revisionHistoryLimit": {}, "f:selector": {},
        "f:strategy": {"f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}}, "f:type": {}},
        "f:template": {
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:containers": {'k:{"name":"nginx"}': {
                    ".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {},
                    "f:ports": {".": {}, 'k:{"containerPort":80,"protocol":"TCP"}': {
                        ".": {}, "f:containerPort": {}, "f:protocol": {}}},
                    "f:resources": {}, "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}}},
                "f:dnsPolicy": {}, "f:restartPolicy": {}, "f:schedulerName": {}, "f:securityContext": {},
                "f:terminationGracePeriodSeconds": {}}}}}


def created(manager="kubectl-create") -> dict:
    obj = copy.deepcopy(CREATED)
    apply.update_managed_fields(None, obj, DEPLOYMENT, manager, api_version="apps/v1", now=T0, reset_fields=STATUS)
    return stored(obj)


def test_create_records_every_field_the_way_upstream_does():
    obj = created()
    assert obj["metadata"]["managedFields"] == [{
        "manager": "kubectl-create", "operation": "Update", "apiVersion": "apps/v1", "time": T0,
        "fieldsType": "FieldsV1", "fieldsV1": CREATED_FIELDS}]
    assert json.dumps(obj["metadata"]["managedFields"][0]["fieldsV1"]).index('"."') < \
        json.dumps(obj["metadata"]["managedFields"][0]["fieldsV1"]).index('"f:app"')


def test_update_moves_changed_fields_to_the_new_manager():
    live = created()
    edited = copy.deepcopy(live)
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.26"
    edited["metadata"]["labels"]["tier"] = "web"
    apply.update_managed_fields(live, edited, DEPLOYMENT, "kubectl-edit", api_version="apps/v1", now=T1)
    assert entries(edited) == [("kubectl-create", "Update", "apps/v1", T0, None),
                               ("kubectl-edit", "Update", "apps/v1", T1, None)]
    assert fields_of(edited, "kubectl-edit") == {
        "f:metadata": {"f:labels": {"f:tier": {}}},
        "f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"nginx"}': {"f:image": {}}}}}}}
    nginx = fields_of(edited, "kubectl-create")["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"nginx"}']
    assert "f:image" not in nginx and "f:name" in nginx


def test_updates_by_one_manager_merge_into_one_entry():
    live = created()
    first = copy.deepcopy(live)
    first["spec"]["replicas"] = 3
    apply.update_managed_fields(live, first, DEPLOYMENT, "kubectl-edit", api_version="apps/v1", now=T1)
    second = copy.deepcopy(first)
    second["spec"]["paused"] = True
    apply.update_managed_fields(first, second, DEPLOYMENT, "kubectl-edit", api_version="apps/v1", now=T2)
    assert entries(second) == [("kubectl-create", "Update", "apps/v1", T0, None),
                               ("kubectl-edit", "Update", "apps/v1", T2, None)]
    assert fields_of(second, "kubectl-edit") == {"f:spec": {"f:paused": {}, "f:replicas": {}}}


def test_remembered_field_sets_answer_alike_and_stay_apart():
    """Managed fields parsed once are remembered; each object still gets FieldsV1 of its own, and
    an entry another manager's write leaves alone keeps its text."""
    first, second = created(), created()
    for obj, image in ((first, "nginx:1.26"), (second, "nginx:1.27")):
        edited = copy.deepcopy(obj)
        edited["spec"]["template"]["spec"]["containers"][0]["image"] = image
        apply.update_managed_fields(obj, edited, DEPLOYMENT, "kubectl-edit", api_version="apps/v1", now=T1)
        obj.clear()
        obj.update(edited)
    assert json.dumps(fields_of(first, "kubectl-create")) == json.dumps(fields_of(second, "kubectl-create"))
    assert fields_of(first, "kubectl-create") is not fields_of(second, "kubectl-create")
    fields_of(first, "kubectl-create")["f:spec"].clear()  # a client changing one object's copy...
    scaled = copy.deepcopy(second)
    scaled["status"] = {"replicas": 2}
    apply.update_managed_fields(second, scaled, DEPLOYMENT, "kube-controller-manager", api_version="apps/v1",
                                now=T2, subresource="status")
    assert json.dumps(fields_of(scaled, "kubectl-create")) == json.dumps(fields_of(second, "kubectl-create"))
    assert "f:replicas" in fields_of(scaled, "kubectl-create")["f:spec"]  # ...changes no other


def test_update_that_changes_nothing_keeps_managed_fields_as_they_were():
    live = created()
    same = copy.deepcopy(live)
    same["metadata"]["resourceVersion"] = "2"  # never owned by anyone
    apply.update_managed_fields(live, same, DEPLOYMENT, "kubectl-edit", api_version="apps/v1", now=T1)
    assert same["metadata"]["managedFields"] == live["metadata"]["managedFields"]


def test_objects_without_managed_fields_stay_without_and_an_empty_list_resets():
    live = stored(CREATED)
    new = copy.deepcopy(live)
    new["spec"]["replicas"] = 4
    apply.update_managed_fields(live, new, DEPLOYMENT, "kubectl-edit", api_version="apps/v1", now=T1)
    assert "managedFields" not in new["metadata"]
    reset = copy.deepcopy(created())
    reset["metadata"]["managedFields"] = []
    apply.update_managed_fields(created(), reset, DEPLOYMENT, "kubectl-patch", api_version="apps/v1", now=T1)
    assert "managedFields" not in reset["metadata"]


def test_status_subresource_writes_are_tracked_separately():
    live = created()
    new = copy.deepcopy(live)
    new["status"] = {"replicas": 1, "conditions": [{"type": "Available", "status": "True"}]}
    new["spec"]["replicas"] = 9  # the status strategy would reset this; it is never owned here
    apply.update_managed_fields(live, new, DEPLOYMENT, "kube-controller-manager", api_version="apps/v1", now=T1,
                                subresource="status", reset_fields=[("spec",), ("metadata",)])
    assert entries(new)[-1] == ("kube-controller-manager", "Update", "apps/v1", T1, "status")
    assert fields_of(new, "kube-controller-manager") == {"f:status": {
        "f:conditions": {".": {}, 'k:{"type":"Available"}': {".": {}, "f:status": {}, "f:type": {}}},
        "f:replicas": {}}}


def test_at_most_ten_update_managers_are_kept():
    obj = created("m00")
    for i in range(1, 12):
        new = copy.deepcopy(obj)
        new["metadata"].setdefault("annotations", {})[f"k{i}"] = "v"
        apply.update_managed_fields(obj, new, DEPLOYMENT, f"m{i:02}", api_version="apps/v1",
                                    now=f"2026-12-01T18:{i:02}:00Z")
        obj = new
    managers = [e[0] for e in entries(obj)]
    assert len(managers) == 10
    assert managers[0] == "ancient-changes" and "m00" not in managers and "m01" not in managers
    ancient = fields_of(obj, "ancient-changes")
    assert "f:spec" in ancient and ancient["f:metadata"]["f:annotations"]["f:k1"] == {}


# ---------------------------------------------------------------------------------------------
# Server-side apply


def test_apply_creates_with_an_apply_entry():
    obj = ssa(None, config(env=[{"name": "MODE", "value": "prod"}]))
    assert obj["spec"]["replicas"] == 2 and obj["metadata"]["labels"] == {"app": "web"}
    assert obj["metadata"]["managedFields"] == [{
        "manager": "alice", "operation": "Apply", "apiVersion": "apps/v1", "time": T1, "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {'k:{"name":"nginx"}': {
                    ".": {}, "f:env": {'k:{"name":"MODE"}': {".": {}, "f:name": {}, "f:value": {}}},
                    "f:image": {}, "f:name": {},
                    "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}}}}}}}}}]


def test_two_managers_conflict_on_replicas():
    live = stored(ssa(None, config(replicas=2)))
    with pytest.raises(ApiError) as e:
        ssa(live, config(replicas=5), manager="bob", now=T2)
    assert (e.value.code, e.value.reason) == (409, "Conflict")
    assert e.value.message == 'Apply failed with 1 conflict: conflict with "alice": .spec.replicas'
    assert e.value.details == {"causes": [
        {"reason": "FieldManagerConflict", "message": 'conflict with "alice"', "field": ".spec.replicas"}]}


def test_conflict_with_an_update_manager_names_its_version():
    live = created("kubectl-client-side-apply")
    applied = copy.deepcopy(CREATED)
    del applied["status"]
    applied["spec"]["replicas"] = 3
    applied["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.26"
    with pytest.raises(ApiError) as e:
        apply.server_side_apply(live, applied, DEPLOYMENT, "ci", False, "apps/v1", T1)
    assert e.value.message == (
        'Apply failed with 2 conflicts: conflicts with "kubectl-client-side-apply" using apps/v1:\n'
        '- .spec.replicas\n- .spec.template.spec.containers[name="nginx"].image')
    assert [c["field"] for c in e.value.details["causes"]] == [
        ".spec.replicas", '.spec.template.spec.containers[name="nginx"].image']
    assert {c["message"] for c in e.value.details["causes"]} == {
        'conflict with "kubectl-client-side-apply" using apps/v1'}


def test_force_takes_ownership():
    live = stored(ssa(None, config(replicas=2)))
    obj = ssa(live, config(replicas=5), manager="bob", force=True, now=T2)
    assert obj["spec"]["replicas"] == 5
    assert "f:replicas" not in fields_of(obj, "alice")["f:spec"]
    assert "f:replicas" in fields_of(obj, "bob")["f:spec"]
    assert [e[0] for e in entries(obj)] == ["alice", "bob"]


def test_same_value_is_shared_and_survives_one_owner_dropping_it():
    live = stored(ssa(None, config(replicas=2)))
    shared = stored(ssa(live, config(replicas=2), manager="bob", now=T2))
    assert "f:replicas" in fields_of(shared, "alice")["f:spec"] and "f:replicas" in fields_of(shared, "bob")["f:spec"]
    obj = ssa(shared, config(replicas=None), now=T3)
    assert obj["spec"]["replicas"] == 2


def test_reapply_without_a_field_removes_it():
    live = stored(ssa(None, config(env=[{"name": "MODE", "value": "prod"}, {"name": "DEBUG", "value": "1"}])))
    obj = ssa(live, config(replicas=None, env=[{"name": "MODE", "value": "prod"}]), now=T2)
    assert "replicas" not in obj["spec"]
    assert obj["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "MODE", "value": "prod"}]
    assert "f:replicas" not in fields_of(obj, "alice")["f:spec"]
    assert obj["metadata"]["uid"] == "2f7c4b8e"  # fields nobody applied are never pruned


def test_fields_set_by_others_are_kept_when_the_applier_drops_its_own():
    live = stored(ssa(None, config()))
    scaled = copy.deepcopy(live)
    scaled["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "500m"}}
    apply.update_managed_fields(live, scaled, DEPLOYMENT, "kubectl-edit", api_version="apps/v1", now=T2)
    obj = ssa(scaled, config(), now=T3)
    assert obj["spec"]["template"]["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "500m"}}


def test_associative_lists_merge_containers_of_two_appliers():
    live = stored(ssa(None, config()))
    sidecar = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
               "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy"}]}}}}
    both = stored(ssa(live, sidecar, manager="mesh", now=T2))
    assert [c["name"] for c in both["spec"]["template"]["spec"]["containers"]] == ["nginx", "proxy"]
    # alice reapplies her own config: the mesh's container is not hers to remove
    obj = ssa(both, config(image="nginx:1.26"), now=T3)
    assert [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]] == ["nginx", "proxy"]
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    # the mesh stops applying its container: it goes
    gone = ssa(stored(obj), {**sidecar, "spec": {}}, manager="mesh", now=T3)
    assert [c["name"] for c in gone["spec"]["template"]["spec"]["containers"]] == ["nginx"]


def test_dropping_a_container_port():
    two_ports = config()
    two_ports["spec"]["template"]["spec"]["containers"][0]["ports"].append({"containerPort": 8080, "name": "admin"})
    live = stored(ssa(None, two_ports))
    obj = ssa(live, config(), now=T2)
    assert obj["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 80}]


def test_noop_apply_changes_nothing():
    live = stored(ssa(None, config()))
    assert ssa(live, config(), now=T3) == live


def test_reset_fields_are_not_owned():
    applied = config()
    applied["status"] = {"replicas": 7}
    obj = ssa(None, applied, reset_fields=STATUS)
    assert "f:status" not in fields_of(obj, "alice")


def test_applying_to_an_untracked_object_credits_existing_fields_to_before_first_apply():
    live = stored(CREATED)
    applied = copy.deepcopy(CREATED)
    del applied["status"]
    applied["spec"]["replicas"] = 3
    with pytest.raises(ApiError) as e:
        apply.server_side_apply(live, applied, DEPLOYMENT, "ci", False, "apps/v1", T1, reset_fields=STATUS)
    assert e.value.message == ('Apply failed with 1 conflict: conflict with "before-first-apply" using apps/v1: '
                               '.spec.replicas')
    obj = apply.server_side_apply(live, applied, DEPLOYMENT, "ci", True, "apps/v1", T1, reset_fields=STATUS)
    assert [e[0] for e in entries(obj)] == ["ci", "before-first-apply"]


def test_kubectl_may_take_over_fields_of_client_side_apply():
    last = copy.deepcopy(CREATED)
    del last["status"]
    live = created("kubectl-client-side-apply")
    live["metadata"]["annotations"] = {apply.LAST_APPLIED: json.dumps(last)}
    applied = copy.deepcopy(last)
    applied["spec"]["replicas"] = 3
    obj = apply.server_side_apply(live, applied, DEPLOYMENT, "kubectl", False, "apps/v1", T1)
    assert obj["spec"]["replicas"] == 3
    assert json.loads(obj["metadata"]["annotations"][apply.LAST_APPLIED]) == applied
    assert obj["metadata"]["annotations"][apply.LAST_APPLIED].endswith("}\n")
    assert "f:replicas" not in fields_of(obj, "kubectl-client-side-apply")["f:spec"]
    with pytest.raises(ApiError) as e:  # any other manager still conflicts
        apply.server_side_apply(live, applied, DEPLOYMENT, "argo", False, "apps/v1", T1)
    assert e.value.message == ('Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using '
                               'apps/v1: .spec.replicas')


def test_service_ports_are_keyed_by_port_and_protocol():
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080},
                                                              {"port": 53, "protocol": "UDP"}]}}
    obj = apply.server_side_apply(None, service, SERVICE, "alice", False, "v1", T1)
    ports = fields_of(obj, "alice")["f:spec"]["f:ports"]
    assert list(ports) == ['k:{"port":53,"protocol":"UDP"}', 'k:{"port":80,"protocol":"TCP"}']
    assert fields_of(obj, "alice")["f:spec"]["f:selector"] == {}


def test_set_lists_use_value_elements():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "finalizers": ["example.com/x"]},
           "spec": {"containers": [{"name": "c", "image": "i"}]}}
    obj = apply.server_side_apply(None, pod, POD, "alice", False, "v1", T1)
    assert fields_of(obj, "alice")["f:metadata"] == {"f:finalizers": {'v:"example.com/x"': {}}}


@pytest.mark.parametrize("mutate, code, message", [
    (lambda c: c.update(apiVersion="apps/v1beta1"), 400, "invalid object type: apps/v1beta1, Kind=Deployment"),
    (lambda c: c.pop("kind"), 400, "invalid object type: apps/v1, Kind="),
    (lambda c: c["metadata"].update(managedFields=[]), 400, "metadata.managedFields must be nil"),
    (lambda c: c["spec"].update(replica=1), 500,
     "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): .spec.replica: field not "
     "declared in schema"),
    (lambda c: c["spec"]["template"]["spec"]["containers"][0]["ports"].append({"name": "x"}), 500,
     "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): "
     '.spec.template.spec.containers[name="nginx"].ports: element 1: associative list with keys has an element '
     'that omits key field "containerPort" (and doesn\'t have default value)'),
    (lambda c: c["spec"]["template"]["spec"]["containers"].append({"name": "nginx"}), 500,
     "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): "
     '.spec.template.spec.containers: duplicate entries for key [name="nginx"]'),
])
def test_apply_errors(mutate, code, message):
    applied = config()
    mutate(applied)
    with pytest.raises(ApiError) as e:
        ssa(None, applied)
    assert (e.value.code, e.value.message) == (code, message)


def test_apply_leaves_its_inputs_alone():
    live = stored(ssa(None, config()))
    before_live, applied = copy.deepcopy(live), config(replicas=4)
    before_applied = copy.deepcopy(applied)
    ssa(live, applied, now=T2)
    assert live == before_live and applied == before_applied


# ---------------------------------------------------------------------------------------------
# The create fast path records exactly what the general comparison records


def _book_objects() -> list[dict]:
    import yaml
    from helpers.cluster import BOOK
    out = []
    for path in sorted(BOOK.rglob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") and doc.get("apiVersion"):
                out.append(doc)
    return out


def _slow_create_fields(obj: dict, node: schema.Node, reset) -> list | None:
    managed = apply._record_update({}, apply._zero_object(node), obj, node, "m", "v1", T0, "",
                                   apply._reset_set(reset))
    return apply.encode_managed_fields(managed)


def test_create_fast_path_matches_the_general_comparison():
    from ketch.api import defaults
    index = schema.gvk_index()
    compared = 0
    rich_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
                                         "env": [{"name": "X", "value": "1"}], "resources": {"limits": {"cpu": "1"}},
                                         "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
                         "volumes": [{"name": "v", "emptyDir": {}}], "tolerations": [{"key": "k", "operator": "Exists"}],
                         "securityContext": {}, "nodeSelector": {}},
                "status": {"phase": "Pending"}}
    # Fields the empty object has as null that a body sets empty: "modified", not "added".
    empty_required = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "e"}, "spec": {"containers": []}},
                      {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "e"},
                       "spec": {"selector": {}, "template": {}}}]
    # Repeated list keys, fields the schema lacks (nested), empty and null values, a scalar where an
    # object belongs.
    odd_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "o", "annotations": {"z": "1", "a": "2"},
                                                               "uid": "u", "managedFields": None},
               "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "X", "value": "1"},
                                                                           {"name": "X", "value": "2"}],
                                        "extra": {"b": {"c": 1}, "a": []}, "resources": {}}],
                        "nodeSelector": None, "affinity": "wrong", "dnsConfig": {"options": [{"name": "n"}]}}}
    for doc in _book_objects() + [rich_pod, odd_pod] + empty_required:
        group, _, version = doc["apiVersion"].rpartition("/")
        name = index.get((group, version, doc["kind"]))
        if name is None:
            continue  # kinds the book names that no longer exist
        node = schema.node(name)
        for obj in (copy.deepcopy(doc), copy.deepcopy(doc)):
            if compared % 2:
                defaults.apply_defaults(obj, node)  # the server records managers on defaulted objects
            for reset in ((), STATUS):
                expected = _slow_create_fields(copy.deepcopy(obj), node, reset)
                fast = copy.deepcopy(obj)
                apply.update_managed_fields(None, fast, node, "m", api_version="v1", now=T0, reset_fields=reset)
                # as JSON text: the order of the FieldsV1 keys is what clients see too
                assert json.dumps(fast["metadata"].get("managedFields")) == json.dumps(expected), \
                    (doc["kind"], doc["metadata"].get("name"))
            compared += 1
    assert compared > 60
