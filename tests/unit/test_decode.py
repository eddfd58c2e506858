"""Decode-time checks: Go unmarshal errors, strict unknown/duplicate fields, pruning, canonical quantities."""

from __future__ import annotations

import copy

import pytest

from ketch.api import decode, kinds, schema


def node(group: str, version: str, kind: str) -> schema.Node:
    return kinds.by_kind(group, version, kind).schema


POD = node("", "v1", "Pod")
DEPLOYMENT = node("apps", "v1", "Deployment")
SERVICE = node("", "v1", "Service")
SECRET = node("", "v1", "Secret")


# --- type errors: the text upstream's JSON decoder produces -----------------------------------------------

TYPE_ERRORS = [
    (
        DEPLOYMENT,
        {"spec": {"replicas": "3"}},
        "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32",
    ),
    (
        DEPLOYMENT,
        {"spec": {"replicas": 1.5}},
        "json: cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32",
    ),
    (
        DEPLOYMENT,
        {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": 5}]}}}},
        "json: cannot unmarshal number into Go struct field Container.spec.template.spec.containers.image of type string",
    ),
    (
        POD,
        {"spec": {"containers": {"name": "a"}}},
        "json: cannot unmarshal object into Go struct field PodSpec.spec.containers of type []v1.Container",
    ),
    (
        POD,
        {"spec": {"containers": [{"command": "ls"}]}},
        "json: cannot unmarshal string into Go struct field Container.spec.containers.command of type []string",
    ),
    (
        POD,
        {"spec": {"restartPolicy": 1}},
        "json: cannot unmarshal number into Go struct field PodSpec.spec.restartPolicy of type v1.RestartPolicy",
    ),
    (
        POD,
        {"spec": {"hostNetwork": "true"}},
        "json: cannot unmarshal string into Go struct field PodSpec.spec.hostNetwork of type bool",
    ),
    (
        POD,
        {"metadata": {"labels": {"app": 1}}},
        "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string",
    ),
    (POD, {"metadata": "web"}, "json: cannot unmarshal string into Go struct field Pod.metadata of type v1.ObjectMeta"),
    (POD, {"kind": 1}, "json: cannot unmarshal number into Go struct field Pod.kind of type string"),
    (
        POD,
        {"spec": {"activeDeadlineSeconds": 2**64}},
        f"json: cannot unmarshal number {2**64} into Go struct field PodSpec.spec.activeDeadlineSeconds of type int64",
    ),
    (
        SERVICE,
        {"spec": {"ports": [{"port": 80, "targetPort": 1.5}]}},
        "json: cannot unmarshal number 1.5 into Go struct field ServicePort.spec.ports.targetPort of type int32",
    ),
    (
        SERVICE,
        {"spec": {"ports": [{"port": 80, "targetPort": True}]}},
        "json: cannot unmarshal bool into Go struct field ServicePort.spec.ports.targetPort of type int32",
    ),
    (
        POD,
        {"spec": {"containers": [{"resources": {"limits": {"cpu": "abc"}}}]}},
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
    ),
    (
        POD,
        {"spec": {"containers": [{"resources": {"limits": {"cpu": True}}}]}},
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
    ),
    (
        POD,
        {"metadata": {"creationTimestamp": "yesterday"}},
        'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"',
    ),
    (
        POD,
        {"metadata": {"creationTimestamp": 5}},
        "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.creationTimestamp of type string",
    ),
    (SECRET, {"data": {"key": "!!!!"}}, "illegal base64 data at input byte 0"),
    (SECRET, {"data": {"key": 7}}, "json: cannot unmarshal number into Go struct field Secret.data of type []uint8"),
]


@pytest.mark.parametrize("schema_node, body, message", TYPE_ERRORS)
def test_type_errors_read_like_go(schema_node, body, message):
    assert decode.check_structure(body, schema_node, strict=False).type_errors[0] == message


def test_unmarshaler_errors_win_over_earlier_type_errors():
    # Go keeps the first type error but aborts on the first unmarshaler (quantity) error.
    body = {"spec": {"hostNetwork": "yes", "containers": [{"resources": {"limits": {"cpu": "lots"}}}]}}
    assert decode.check_structure(body, POD, strict=False).type_errors == [
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    ]


def test_type_errors_in_document_order():
    body = {"spec": {"hostNetwork": "yes", "hostPID": "no"}}
    assert decode.check_structure(body, POD, strict=False).type_errors == [
        "json: cannot unmarshal string into Go struct field PodSpec.spec.hostNetwork of type bool",
        "json: cannot unmarshal string into Go struct field PodSpec.spec.hostPID of type bool",
    ]


@pytest.mark.parametrize(
    "body",
    [
        {
            "spec": {
                "replicas": 3,
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "a",
                                "image": "x",
                                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                "resources": {"limits": {"cpu": 1, "memory": 0.5}},
                            }
                        ]
                    }
                },
            }
        },
        {"spec": {"replicas": 2.0, "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}}}},
        {"metadata": {"creationTimestamp": "2024-05-01T10:00:00Z", "labels": None}, "spec": None},
    ],
)
def test_well_typed_bodies_decode(body):
    assert decode.check_structure(body, DEPLOYMENT, strict=True) == decode.Structure([], [])


# --- unknown fields ----------------------------------------------------------------------------------------


def test_unknown_fields_are_listed_with_indices_only_when_strict():
    body = {"spec": {"foo": 1, "template": {"spec": {"containers": [{"name": "a"}, {"imagee": "x"}]}}}, "bar": 2}
    assert decode.check_structure(body, DEPLOYMENT, strict=True).unknown_fields == [
        "spec.foo",
        "spec.template.spec.containers[1].imagee",
        "bar",
    ]
    assert decode.check_structure(body, DEPLOYMENT, strict=False).unknown_fields == []


def test_free_form_content_has_no_unknown_fields():
    revision = node("apps", "v1", "ControllerRevision")
    body = {"data": {"spec": {"anything": [1, {"goes": True}]}}, "revision": 1}
    assert decode.check_structure(body, revision, strict=True) == decode.Structure([], [])


def test_unknown_field_messages():
    assert decode.unknown_field_messages(["spec.clusterip"]) == ['unknown field "spec.clusterip"']
    assert decode.strict_error_message(['unknown field "spec.foo"', 'unknown field "spec.bar"']) == (
        'strict decoding error: unknown field "spec.foo", unknown field "spec.bar"'
    )


def test_decoding_drops_unknown_fields_and_keeps_free_form_ones():
    revision = node("apps", "v1", "ControllerRevision")
    body = {"data": {"whatever": {"x": 1}}, "foo": 2, "metadata": {"name": "x", "bogus": 1}, "revision": 3}
    assert decode.decode_body(body, revision, strict=False).unknown_fields == ["foo", "metadata.bogus"]
    assert body == {"data": {"whatever": {"x": 1}}, "metadata": {"name": "x"}, "revision": 3}


def test_decoding_drops_unknown_fields_inside_lists_and_maps_in_document_order():
    body = {"spec": {"ports": [{"port": 80, "nodeprt": 1}], "clusterAddr": "None", "selector": {"a": "b"}}}
    assert decode.decode_body(body, SERVICE, strict=False).unknown_fields == [
        "spec.ports[0].nodeprt", "spec.clusterAddr"]
    assert body == {"spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}}


def test_a_patched_body_is_decoded_where_it_differs_from_the_stored_object():
    stored = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]},
              "status": {"phase": "Pending"}}
    # A status patch with a type error and an unknown field: both found, as without the stored object.
    patched = copy.deepcopy(stored)
    patched["status"] = {"phase": "Running", "podIP": 7, "bogus": "10.0.0.1"}
    found = decode.decode_body(patched, POD, strict=True, decoded=stored)
    assert found.type_errors == ["json: cannot unmarshal number into Go struct field PodStatus.status.podIP "
                                 "of type string"]
    assert found.unknown_fields == ["status.bogus"]
    # Equal means equal as JSON: true where the stored object had 1 is a change, and is checked.
    stored_odd = {"spec": {"containers": [{"name": "c", "tty": 1}]}}
    patched = {"spec": {"containers": [{"name": "c", "tty": True}]}}
    assert decode.decode_body(patched, POD, strict=True, decoded=stored_odd) == decode.Structure([], [])
    patched = {"spec": {"containers": [{"name": "c", "tty": 1}]}}
    assert decode.decode_body(patched, POD, strict=True, decoded={"spec": {}}).type_errors
    # A field equal to the stored object's decoded to itself once already: it is left as it is.
    same = {"spec": {"containers": [{"name": "c", "tty": 1}]}}
    assert decode.decode_body(same, POD, strict=True, decoded=copy.deepcopy(same)) == decode.Structure([], [])


def test_decoding_folds_the_book_era_spelling_of_a_field():
    body = {"spec": {"clusterip": "None", "ports": [{"port": 80, "nodeport": 30001}]}}
    assert decode.decode_body(body, SERVICE, strict=True) == decode.Structure([], [])
    assert body == {"spec": {"clusterIP": "None", "ports": [{"port": 80, "nodePort": 30001}]}}


def test_checking_alone_changes_nothing():
    body = {"spec": {"clusterip": "None", "containers": [], "bogus": 1}}
    before = copy.deepcopy(body)
    assert decode.check_structure(body, SERVICE, strict=True).unknown_fields == ["spec.clusterip", "spec.containers",
                                                                                  "spec.bogus"]
    assert body == before


# --- quantities --------------------------------------------------------------------------------------------


def test_quantities_are_stored_canonically():
    body = {
        "spec": {
            "containers": [
                {
                    "name": "a",
                    "resources": {
                        "limits": {"cpu": 0.5, "memory": "1024Mi"},
                        "requests": {"cpu": 1, "memory": "1000m"},
                    },
                }
            ],
            "overhead": {"cpu": "250m"},
        }
    }
    assert decode.decode_body(body, POD, strict=True) == decode.Structure([], [])
    resources = body["spec"]["containers"][0]["resources"]
    assert resources == {"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1"}}
    assert body["spec"]["overhead"] == {"cpu": "250m"}


def test_quantities_in_other_kinds():
    quota = node("", "v1", "ResourceQuota")
    body = {"spec": {"hard": {"pods": 3, "requests.memory": "2048Mi"}}}
    decode.decode_body(body, quota, strict=False)
    assert body == {"spec": {"hard": {"pods": "3", "requests.memory": "2Gi"}}}


# --- the raw body: duplicates and order --------------------------------------------------------------------

CONFORMANCE_BODY = """{
  "apiVersion": "apps/v1", "kind": "Deployment",
  "metadata": {"name": "my-dep", "labels": {"app": "nginx"}},
  "spec": {
    "unknownField": "foo",
    "replicas": 2,
    "replicas": 3,
    "selector": {"matchLabels": {"app": "nginx"}},
    "template": {"metadata": {"labels": {"app": "nginx"}},
                 "spec": {"containers": [{"name": "nginx", "image": "nginx:latest"}]}}
  }
}"""


def test_strict_errors_follow_the_document():
    errors = decode.strict_decoding_errors(CONFORMANCE_BODY, "application/json", DEPLOYMENT)
    assert decode.strict_error_message(errors) == (
        'strict decoding error: unknown field "spec.unknownField", duplicate field "spec.replicas"'
    )


def test_duplicates_and_unknowns_deep_inside():
    raw = (
        '{"metadata": {"labels": {"app": "a", "app": "b"}}, "spec": {"template": {"spec": {"containers": '
        '[{"name": "a", "imagee": 1, "imagee": 2, "name": "b"}]}}}}'
    )
    assert decode.strict_decoding_errors(raw.encode(), "application/json", DEPLOYMENT) == [
        'duplicate field "metadata.labels.app"',
        'unknown field "spec.template.spec.containers[0].imagee"',
        'duplicate field "spec.template.spec.containers[0].name"',
    ]


def test_find_duplicate_fields_json_and_yaml():
    assert decode.find_duplicate_fields(CONFORMANCE_BODY, "application/json") == ['duplicate field "spec.replicas"']
    yaml_body = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  name: b\nspec:\n  containers: []\n"
    assert decode.find_duplicate_fields(yaml_body, "application/yaml") == [
        'yaml: unmarshal errors:\n  line 5: key "name" already set in map'
    ]
    assert decode.find_duplicate_fields('{"a": 1}', "application/json") == []


@pytest.mark.parametrize("raw, expected", [
    (b'{"a": 1, "b": {"c": 1, "c": 2}}', ['duplicate field "b.c"']),
    (b'{"a" :1, "b": {"c": 1, "c" : 2}}', ['duplicate field "b.c"']),  # blanks before the colons
    (b'{"a": "x\\": y", "a": 2}', ['duplicate field "a"']),  # a quote and colon inside a string...
    (b'{"a": "x\\": y", "b": 2}', []),  # ...counted as a key end without a duplicate
    (b'{"x": [{"k": 1}, {"k": 2, "k": 3}]}', ['duplicate field "x[1].k"']),
    (b'{"a": [], "b": {}}', []),
])
def test_duplicates_found_with_the_parsed_key_count(raw, expected):
    import json
    parsed = json.loads(raw)
    assert decode.find_duplicate_fields(raw, "application/json", None, decode.count_keys(parsed)) == expected
    assert decode.find_duplicate_fields(raw, "application/json") == expected


def test_yaml_duplicates_come_before_unknown_fields():
    body = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  name: b\nspec:\n  foo: 1\n"
    assert decode.strict_decoding_errors(body, "application/yaml", POD) == [
        'yaml: unmarshal errors:\n  line 5: key "name" already set in map',
        'unknown field "spec.foo"',
    ]


def test_handled_as_message():
    detail = "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"
    assert decode.handled_as_message("Deployment", "v1", "Deployment", detail) == (
        'Deployment in version "v1" cannot be handled as a Deployment: ' + detail
    )


def test_book_headless_service_typo_is_an_unknown_field():
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "node-js-none"},
        "spec": {"clusterip": "None", "ports": [{"port": 80}], "selector": {"name": "node-js"}},
    }
    assert decode.check_structure(copy.deepcopy(svc), SERVICE, strict=True).unknown_fields == ["spec.clusterip"]


@pytest.mark.parametrize(
    "value, message",
    [
        ("2024-02-30T10:00:00Z", None),  # day-of-month is only range-checked, like the layout parse
        ("2024-01-01T10:00:00+02:00", None),
        (
            "2024-01-01 10:00:00Z",
            'parsing time "2024-01-01 10:00:00Z" as "2006-01-02T15:04:05Z07:00": cannot parse " 10:00:00Z" as "T"',
        ),
        ("2024-13-01T10:00:00Z", 'parsing time "2024-13-01T10:00:00Z": month out of range'),
    ],
)
def test_rfc3339_errors(value, message):
    assert decode.rfc3339_error(value) == message
