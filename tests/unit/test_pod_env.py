"""A container's environment as the kubelet builds it: envFrom, env, valueFrom, $(VAR) expansion
and the Service discovery variables of the book's Listing 3-13."""
from __future__ import annotations

import pytest

from helpers.pod_source import DictSource, config_map, secret, service
from ketch.agent.env import (ConfigError, container_env, container_env_with_warnings, expand,
                             expand_command_and_args, expand_subpath_expr, mapping_for)

KUBERNETES = service("default", "kubernetes", "10.43.0.1", {"name": "https", "port": 443, "protocol": "TCP"})


def pod(*containers: dict, namespace: str = "default", **spec) -> dict:
    return {"metadata": {"name": "node-js-pod", "namespace": namespace, "uid": "u-1",
                         "labels": {"name": "node-js", "tier": "web"}, "annotations": {"note": 'say "hi"'}},
            "spec": {"nodeName": "node-1", "serviceAccountName": "default", "containers": list(containers), **spec},
            "status": {"podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}, {"ip": "fd00::5"}],
                       "hostIP": "192.168.1.10", "hostIPs": [{"ip": "192.168.1.10"}]}}


def c(**fields) -> dict:
    return {"name": "app", "image": "busybox", **fields}


async def test_listing_3_13_service_variables():
    src = DictSource([KUBERNETES, service("default", "node-js", "10.0.103.215", {"port": 80, "protocol": "TCP"})])
    env = dict(await container_env(pod(c()), pod(c())["spec"]["containers"][0], src))
    assert {k: v for k, v in env.items() if k.startswith("NODE_JS")} == {
        "NODE_JS_PORT_80_TCP": "tcp://10.0.103.215:80",
        "NODE_JS_PORT": "tcp://10.0.103.215:80",
        "NODE_JS_PORT_80_TCP_PROTO": "tcp",
        "NODE_JS_PORT_80_TCP_PORT": "80",
        "NODE_JS_SERVICE_HOST": "10.0.103.215",
        "NODE_JS_PORT_80_TCP_ADDR": "10.0.103.215",
        "NODE_JS_SERVICE_PORT": "80",
    }
    assert env["KUBERNETES_SERVICE_HOST"] == "10.43.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["KUBERNETES_PORT"] == "tcp://10.43.0.1:443"


async def test_named_ports_udp_ipv6_and_skipped_services():
    src = DictSource([
        KUBERNETES,
        service("web", "multi-port", "10.0.0.9", {"name": "http", "port": 80}, {"name": "dns-udp", "port": 53,
                                                                                "protocol": "UDP"}),
        service("web", "v6", "fd00::10", {"port": 8080}),
        service("web", "headless", "None", {"port": 80}),
        service("other", "elsewhere", "10.0.0.7", {"port": 80}),
    ])
    p = pod(c(), namespace="web")
    env = dict(await container_env(p, p["spec"]["containers"][0], src))
    assert env["MULTI_PORT_SERVICE_PORT"] == "80"
    assert env["MULTI_PORT_SERVICE_PORT_HTTP"] == "80"
    assert env["MULTI_PORT_SERVICE_PORT_DNS_UDP"] == "53"
    assert env["MULTI_PORT_PORT"] == "tcp://10.0.0.9:80"
    assert env["MULTI_PORT_PORT_53_UDP"] == "udp://10.0.0.9:53"
    assert env["MULTI_PORT_PORT_53_UDP_PROTO"] == "udp"
    assert env["V6_PORT_8080_TCP"] == "tcp://[fd00::10]:8080"
    assert not any(k.startswith(("HEADLESS", "ELSEWHERE")) for k in env)
    assert env["KUBERNETES_SERVICE_HOST"] == "10.43.0.1"  # the master service reaches every namespace


async def test_enable_service_links_false_keeps_only_the_master_service():
    src = DictSource([KUBERNETES, service("default", "node-js", "10.0.103.215", {"port": 80})])
    p = pod(c(), enableServiceLinks=False)
    env = dict(await container_env(p, p["spec"]["containers"][0], src))
    assert "NODE_JS_SERVICE_HOST" not in env
    assert env["KUBERNETES_SERVICE_HOST"] == "10.43.0.1"


async def test_env_from_prefix_optional_and_invalid_keys():
    src = DictSource([config_map("default", "cfg", LOG_LEVEL="debug", **{"1badkey": "x", "ok.dotted": "y"}),
                      secret("default", "creds", PASSWORD="s3cr3t", **{"2alsobad": "z"})])
    container = c(envFrom=[{"configMapRef": {"name": "cfg"}},
                           {"secretRef": {"name": "creds"}, "prefix": "DB_"},
                           {"configMapRef": {"name": "missing", "optional": True}}])
    result = await container_env_with_warnings(pod(container), container, src)
    env = dict(result.env)
    assert env["LOG_LEVEL"] == "debug"
    assert env["DB_PASSWORD"] == "s3cr3t"
    assert env["DB_2alsobad"] == "z"  # the prefix makes it a valid name
    assert "1badkey" not in env and "ok.dotted" in env
    assert result.warnings == [("InvalidEnvironmentVariableNames",
                                "Keys [1badkey] from the EnvFrom configMap default/cfg were skipped since they are "
                                "considered invalid environment variable names.")]


async def test_env_overrides_env_from_and_keeps_declaration_order():
    src = DictSource([config_map("default", "cfg", A="from-cm", B="b")])
    container = c(envFrom=[{"configMapRef": {"name": "cfg"}}], env=[{"name": "Z", "value": "z"},
                                                                     {"name": "A", "value": "from-env"}])
    env = await container_env(pod(container), container, src)
    assert env == [("B", "b"), ("Z", "z"), ("A", "from-env")]


async def test_value_from_config_map_secret_and_optional_keys():
    src = DictSource([config_map("default", "cfg", color="blue"), secret("default", "creds", token=b"\xffraw")])
    container = c(env=[
        {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": True}}},
        {"name": "GONE2", "valueFrom": {"secretKeyRef": {"name": "nosuch", "key": "k", "optional": True}}},
    ])
    env = dict(await container_env(pod(container), container, src))
    assert env["COLOR"] == "blue"
    assert env["TOKEN"].encode("utf-8", "surrogateescape") == b"\xffraw"  # bytes pass through unchanged
    assert "GONE" not in env and "GONE2" not in env


@pytest.mark.parametrize("value_from,message", [
    ({"configMapKeyRef": {"name": "x", "key": "k"}}, 'configmap "x" not found'),
    ({"secretKeyRef": {"name": "x", "key": "k"}}, 'secret "x" not found'),
    ({"configMapKeyRef": {"name": "cfg", "key": "k"}}, "couldn't find key k in ConfigMap team/cfg"),
    ({"secretKeyRef": {"name": "creds", "key": "k"}}, "couldn't find key k in Secret team/creds"),
])
async def test_missing_references_are_config_errors(value_from, message):
    src = DictSource([config_map("team", "cfg", a="1"), secret("team", "creds", b="2")])
    container = c(env=[{"name": "V", "valueFrom": value_from}])
    with pytest.raises(ConfigError) as err:
        await container_env(pod(container, namespace="team"), container, src)
    assert str(err.value) == message


async def test_env_from_missing_config_map_is_an_error():
    container = c(envFrom=[{"configMapRef": {"name": "absent"}}])
    with pytest.raises(ConfigError, match='^configmap "absent" not found$'):
        await container_env(pod(container), container, DictSource())


async def test_field_refs():
    def ref(path):
        return {"valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}
    container = c(env=[{"name": n, **ref(p)} for n, p in [
        ("NAME", "metadata.name"), ("NS", "metadata.namespace"), ("UID", "metadata.uid"),
        ("TIER", "metadata.labels['tier']"), ("NOTE", "metadata.annotations['note']"),
        ("NONE", "metadata.labels['absent']"),
        ("NODE", "spec.nodeName"), ("SA", "spec.serviceAccountName"),
        ("HOST_IP", "status.hostIP"), ("HOST_IPS", "status.hostIPs"),
        ("POD_IP", "status.podIP"), ("POD_IPS", "status.podIPs")]])
    env = dict(await container_env(pod(container), container, DictSource()))
    assert env == {"NAME": "node-js-pod", "NS": "default", "UID": "u-1", "TIER": "web", "NOTE": 'say "hi"',
                   "NONE": "", "NODE": "node-1", "SA": "default", "HOST_IP": "192.168.1.10",
                   "HOST_IPS": "192.168.1.10", "POD_IP": "10.244.0.5", "POD_IPS": "10.244.0.5,fd00::5"}


async def test_resource_field_refs_with_divisors_and_allocatable_defaults():
    def res(resource, divisor=None, container_name=None):
        sel = {"resource": resource}
        if divisor:
            sel["divisor"] = divisor
        if container_name:
            sel["containerName"] = container_name
        return {"valueFrom": {"resourceFieldRef": sel}}
    container = c(resources={"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
                  env=[{"name": "CPU_REQ_M", **res("requests.cpu", "1m")},
                       {"name": "CPU_REQ", **res("requests.cpu")},          # ceil(0.25) = 1
                       {"name": "CPU_LIMIT", **res("limits.cpu")},          # no limit → node allocatable
                       {"name": "MEM_LIMIT_MI", **res("limits.memory", "1Mi")},
                       {"name": "MEM_REQ", **res("requests.memory")},
                       {"name": "STORAGE_GI", **res("limits.ephemeral-storage", "1Gi")},
                       {"name": "OTHER_MEM", **res("limits.memory", "1Mi", "sidecar")}])
    sidecar = {"name": "sidecar", "image": "busybox"}
    p = pod(container, sidecar)
    env = dict(await container_env(p, container, DictSource(allocatable={"cpu": "3", "memory": "2Gi",
                                                                         "ephemeral-storage": "50Gi"})))
    assert env["CPU_REQ_M"] == "250"
    assert env["CPU_REQ"] == "1"
    assert env["CPU_LIMIT"] == "3"
    assert env["MEM_LIMIT_MI"] == "128"
    assert env["MEM_REQ"] == str(64 * 1024 * 1024)
    assert env["STORAGE_GI"] == "50"
    assert env["OTHER_MEM"] == "2048"


async def test_value_expansion_against_earlier_vars_and_services():
    src = DictSource([KUBERNETES, config_map("default", "cfg", HOST="db")])
    container = c(envFrom=[{"configMapRef": {"name": "cfg"}}], env=[
        {"name": "PORT", "value": "5432"},
        {"name": "URL", "value": "postgres://$(HOST):$(PORT)/x?api=$(KUBERNETES_SERVICE_HOST)"},
        {"name": "LATER_REF", "value": "$(DEFINED_AFTER)"},
        {"name": "DEFINED_AFTER", "value": "late"},
        {"name": "ESCAPED", "value": "$$(PORT) costs $$5 and $x"},
        {"name": "OPEN", "value": "$(PORT"},
    ])
    env = dict(await container_env(pod(container), container, src))
    assert env["URL"] == "postgres://db:5432/x?api=10.43.0.1"
    assert env["LATER_REF"] == "$(DEFINED_AFTER)"  # only what is declared before is known
    assert env["ESCAPED"] == "$(PORT) costs $5 and $x"
    assert env["OPEN"] == "$(PORT"


def test_expansion_edge_cases():
    m = mapping_for({"A": "1", "EMPTY": ""})
    assert expand("$(A)$(A)", m) == "11"
    assert expand("$(EMPTY)|$(NOPE)", m) == "|$(NOPE)"
    assert expand("$", m) == "$"
    assert expand("a$", m) == "a$"
    assert expand("$$$(A)", m) == "$1"
    assert expand("$$$$", m) == "$$"
    assert expand("$()", m) == "$()"


def test_command_and_args_expansion():
    container = c(command=["/bin/sh", "-c", "echo $(MSG) $$(MSG)"], args=["$(MSG)", "$(UNSET)"])
    command, args = expand_command_and_args(container, [("MSG", "hello")])
    assert command == ["/bin/sh", "-c", "echo hello $(MSG)"]
    assert args == ["hello", "$(UNSET)"]


def test_subpath_expr_needs_every_variable():
    assert expand_subpath_expr("logs/$(POD_NAME)", [("POD_NAME", "web-0")]) == "logs/web-0"
    with pytest.raises(ConfigError, match="^missing value for A, B$"):
        expand_subpath_expr("$(B)/$(A)/$(C)", [("A", ""), ("C", "c")])
