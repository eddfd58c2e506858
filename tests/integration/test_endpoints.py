"""Endpoints and EndpointSlices from Services and pods, on a real server with real kubectl.

Pods here are bound to Node objects of the test's own and get their IP and readiness through
pods/status, as a kubelet reports them, so what is asserted is exactly what the controllers make
of a Service's selected pods.
"""
from __future__ import annotations

import time

import pytest
import yaml
from kubernetes import client, config

from helpers.cluster import BOOK, unique, wait_for
from helpers.http import Api

MERGE = "application/merge-patch+json"


@pytest.fixture(scope="module")
def api(server):
    return Api(server.kubeconfig)


@pytest.fixture
def ns(api):
    name = unique("ep")
    status, body, _ = api.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201, body
    yield name
    api.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest.fixture(scope="module")
def node(api):
    name = unique("ep-node")
    status, body, _ = api.request("POST", "/api/v1/nodes", {
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": "zone-a"}}})
    assert status == 201, body
    yield name
    api.request("DELETE", f"/api/v1/nodes/{name}")


def make_pod(api, ns: str, name: str, labels: dict, node: str | None, ip: str | None, ready: bool,
             ports: list[dict] | None = None, **spec) -> dict:
    status, pod, _ = api.request("POST", f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
        "spec": {"schedulerName": "none", **spec,
                 "containers": [{"name": "c", "image": "busybox", "ports": ports or []}]}})
    assert status == 201, pod
    if node:
        status, body, _ = api.request("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", {
            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"kind": "Node", "name": node}})
        assert status == 201, body
    if ip:
        set_status(api, ns, name, ip, ready)
    return pod


def set_status(api, ns: str, name: str, ip: str, ready: bool) -> dict:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status, pod, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods/{name}")
    pod["status"].update(phase="Running", podIP=ip, podIPs=[{"ip": ip}], hostIP="192.0.2.1")
    conds = [c for c in pod["status"].get("conditions", []) if c["type"] != "Ready"]
    conds.append({"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now})
    pod["status"]["conditions"] = conds
    status, body, _ = api.request("PUT", f"/api/v1/namespaces/{ns}/pods/{name}/status", pod)
    assert status == 200, body
    return body


def service(api, ns: str, name: str, selector: dict | None, ports: list[dict], **spec) -> dict:
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"tier": "web"}},
            "spec": {"ports": ports, **spec}}
    if selector is not None:
        body["spec"]["selector"] = selector
    status, svc, _ = api.request("POST", f"/api/v1/namespaces/{ns}/services", body)
    assert status == 201, svc
    return svc


def get(api, path: str) -> dict | None:
    status, body, _ = api.request("GET", path)
    return body if status == 200 else None


def slices(api, ns: str, svc: str, manager: str = "endpointslice-controller.k8s.io") -> list[dict]:
    sel = f"kubernetes.io/service-name={svc},endpointslice.kubernetes.io/managed-by={manager}"
    return get(api, f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices?labelSelector={sel}")["items"]


def endpoints_of(api, ns: str, name: str):
    ep = get(api, f"/api/v1/namespaces/{ns}/endpoints/{name}")
    return ep.get("subsets") if ep else None


PORTS = [{"name": "http", "port": 80, "targetPort": "web"}, {"name": "metrics", "port": 9090, "targetPort": 9090}]
WEB = [{"name": "web", "containerPort": 8080}]


def test_endpoints_list_ready_and_not_ready_pods_with_resolved_ports(server, api, ns, node):
    labels = {"app": "web"}
    p1 = make_pod(api, ns, "p1", labels, node, "10.9.0.1", True, WEB)
    p2 = make_pod(api, ns, "p2", labels, node, "10.9.0.2", False, WEB)
    make_pod(api, ns, "no-ip", labels, None, None, False, WEB)
    make_pod(api, ns, "other", {"app": "other"}, node, "10.9.0.3", True, WEB)
    service(api, ns, "web", labels, PORTS)
    expected = [{"addresses": [{"ip": "10.9.0.1", "nodeName": node,
                                "targetRef": {"kind": "Pod", "namespace": ns, "name": "p1", "uid": p1["metadata"]["uid"]}}],
                 "notReadyAddresses": [{"ip": "10.9.0.2", "nodeName": node,
                                        "targetRef": {"kind": "Pod", "namespace": ns, "name": "p2",
                                                      "uid": p2["metadata"]["uid"]}}],
                 "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                           {"name": "metrics", "port": 9090, "protocol": "TCP"}]}]
    wait_for(lambda: endpoints_of(api, ns, "web") == expected, what="the endpoints")
    ep = get(api, f"/api/v1/namespaces/{ns}/endpoints/web")
    assert ep["metadata"]["labels"] == {"tier": "web"}
    assert ep["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"].endswith("Z")
    out = server.kubectl("get", "endpoints", "web", "-n", ns).stdout.splitlines()
    assert out[0].split() == ["NAME", "ENDPOINTS", "AGE"]
    assert out[1].split()[0] == "web" and "10.9.0.1:8080" in out[1] and "10.9.0.2" not in out[1]

    # p2 turns ready: it moves to the ready addresses.
    set_status(api, ns, "p2", "10.9.0.2", True)
    wait_for(lambda: [a["ip"] for a in (endpoints_of(api, ns, "web") or [{}])[0].get("addresses", [])]
             == ["10.9.0.1", "10.9.0.2"], what="p2 ready")
    assert "notReadyAddresses" not in endpoints_of(api, ns, "web")[0]


def test_endpoint_slices_carry_conditions_zone_and_owner(server, api, ns, node):
    labels = {"app": "web"}
    p1 = make_pod(api, ns, "p1", labels, node, "10.9.1.1", True, WEB)
    make_pod(api, ns, "p2", labels, node, "10.9.1.2", False, WEB)
    svc = service(api, ns, "web", labels, PORTS)
    found = wait_for(lambda: [s for s in slices(api, ns, "web") if len(s.get("endpoints") or []) == 2],
                     what="a slice with both pods")
    s = found[0]
    assert s["metadata"]["name"].startswith("web-") and s["metadata"]["generateName"] == "web-"
    assert s["addressType"] == "IPv4"
    assert s["metadata"]["labels"]["tier"] == "web"
    assert s["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                                 "uid": svc["metadata"]["uid"], "controller": True,
                                                 "blockOwnerDeletion": True}]
    assert sorted((p["name"], p["port"], p["protocol"]) for p in s["ports"]) == [("http", 8080, "TCP"),
                                                                                ("metrics", 9090, "TCP")]
    by_ip = {e["addresses"][0]: e for e in s["endpoints"]}
    assert by_ip["10.9.1.1"] == {"addresses": ["10.9.1.1"], "conditions": {"ready": True, "serving": True,
                                                                             "terminating": False},
                                 "nodeName": node, "zone": "zone-a",
                                 "targetRef": {"kind": "Pod", "namespace": ns, "name": "p1",
                                               "uid": p1["metadata"]["uid"]}}
    assert by_ip["10.9.1.2"]["conditions"] == {"ready": False, "serving": False, "terminating": False}
    out = server.kubectl("get", "endpointslices", "-n", ns).stdout.splitlines()
    assert out[0].split() == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    row = out[1].split()
    assert row[0] == s["metadata"]["name"] and row[1] == "IPv4" and "10.9.1.1" in row[3]

    # A terminating pod (bound, so deleted gracefully) stays in the slice as terminating, leaves Endpoints.
    api.request("DELETE", f"/api/v1/namespaces/{ns}/pods/p1")

    def terminating():
        eps = {e["addresses"][0]: e for s in slices(api, ns, "web") for e in s.get("endpoints") or []}
        return eps.get("10.9.1.1", {}).get("conditions") == {"ready": False, "serving": True, "terminating": True}
    wait_for(terminating, what="p1 terminating in the slice")
    wait_for(lambda: "10.9.1.1" not in str(endpoints_of(api, ns, "web")), what="p1 out of the endpoints")


def test_publish_not_ready_addresses_and_headless_without_ports(api, ns, node):
    labels = {"app": "db"}
    make_pod(api, ns, "db-0", labels, node, "10.9.2.1", False, hostname="db-0", subdomain="db")
    service(api, ns, "db", labels, [], clusterIP="None", publishNotReadyAddresses=True)
    got = wait_for(lambda: endpoints_of(api, ns, "db"), what="headless endpoints")
    assert got == [{"addresses": [{"ip": "10.9.2.1", "hostname": "db-0", "nodeName": node,
                                   "targetRef": {"kind": "Pod", "namespace": ns, "name": "db-0",
                                                 "uid": got[0]["addresses"][0]["targetRef"]["uid"]}}]}]
    ep = get(api, f"/api/v1/namespaces/{ns}/endpoints/db")
    assert ep["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    s = wait_for(lambda: [s for s in slices(api, ns, "db") if s.get("endpoints")], what="headless slice")[0]
    assert "ports" not in s or not s["ports"]
    assert s["endpoints"][0]["hostname"] == "db-0"
    assert s["endpoints"][0]["conditions"] == {"ready": True, "serving": True, "terminating": False}


def test_nothing_is_written_when_nothing_changed(api, ns, node):
    labels = {"app": "calm"}
    make_pod(api, ns, "c1", labels, node, "10.9.3.1", True, WEB)
    service(api, ns, "calm", labels, PORTS)
    wait_for(lambda: endpoints_of(api, ns, "calm"), what="endpoints")
    wait_for(lambda: [s for s in slices(api, ns, "calm") if s.get("endpoints")], what="slice")
    ep_rv = get(api, f"/api/v1/namespaces/{ns}/endpoints/calm")["metadata"]["resourceVersion"]
    slice_rvs = sorted(s["metadata"]["resourceVersion"] for s in slices(api, ns, "calm"))
    api.request("PATCH", f"/api/v1/namespaces/{ns}/pods/c1", {"metadata": {"annotations": {"x": "y"}}},
                content_type=MERGE)
    api.request("PATCH", f"/api/v1/namespaces/{ns}/services/calm", {"metadata": {"annotations": {"x": "y"}}},
                content_type=MERGE)
    time.sleep(0.5)  # a negative check: give the controllers time to (not) write
    assert get(api, f"/api/v1/namespaces/{ns}/endpoints/calm")["metadata"]["resourceVersion"] == ep_rv
    assert sorted(s["metadata"]["resourceVersion"] for s in slices(api, ns, "calm")) == slice_rvs


def test_more_than_100_endpoints_make_two_slices_and_deleting_the_service_cleans_up(server, api, ns):
    labels = {"app": "big"}
    py = config.new_client_from_config(config_file=str(server.kubeconfig))
    core = client.CoreV1Api(py)  # one kept-alive connection for the bulk work
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for i in range(105):
        core.create_namespaced_pod(ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"b{i}", "labels": labels},
                                        "spec": {"schedulerName": "none",
                                                 "containers": [{"name": "c", "image": "busybox", "ports": WEB}]}})
        core.patch_namespaced_pod_status(f"b{i}", ns, {"status": {
            "phase": "Running", "podIP": f"10.9.4.{i + 1}", "podIPs": [{"ip": f"10.9.4.{i + 1}"}],
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}})
    py.close()
    service(api, ns, "big", labels, PORTS[:1])
    wait_for(lambda: sum(len(s.get("endpoints") or []) for s in slices(api, ns, "big")) == 105, timeout=20,
             what="105 endpoints in slices")
    counts = sorted(len(s.get("endpoints") or []) for s in slices(api, ns, "big"))
    assert len(counts) == 2 and max(counts) == 100, counts
    api.request("DELETE", f"/api/v1/namespaces/{ns}/services/big")
    wait_for(lambda: endpoints_of(api, ns, "big") is None and
             get(api, f"/api/v1/namespaces/{ns}/endpoints/big") is None, what="the endpoints to go")
    wait_for(lambda: not slices(api, ns, "big"), what="the slices to be collected")


def test_service_without_selector_keeps_user_endpoints_and_mirrors_them(server, api, ns):
    svc_doc = yaml.safe_load((BOOK / "Chapter03" / "nodejs-custom-service.yaml").read_text())
    ep_doc = yaml.safe_load((BOOK / "Chapter03" / "nodejs-custom-endpoint.yaml").read_text())
    ep_doc["subsets"][0]["addresses"][0]["ip"] = "192.0.2.10"
    server.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(svc_doc))
    server.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(ep_doc))
    mirrored = wait_for(lambda: slices(api, ns, "custom-service", "endpointslicemirroring-controller.k8s.io"),
                        what="the mirrored slice")
    s = mirrored[0]
    assert s["addressType"] == "IPv4"
    assert s["endpoints"] == [{"addresses": ["192.0.2.10"], "conditions": {"ready": True}}]
    assert s["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}]
    assert s["metadata"]["ownerReferences"][0]["kind"] == "Service"
    time.sleep(0.3)
    assert endpoints_of(api, ns, "custom-service")[0]["addresses"] == [{"ip": "192.0.2.10"}]
    assert not slices(api, ns, "custom-service")  # the slice controller leaves selector-less services alone
    out = server.kubectl("get", "endpoints", "custom-service", "-n", ns).stdout
    assert "192.0.2.10:80" in out


def test_the_kubernetes_service_is_left_to_the_apiserver(server, api):
    ep = get(api, "/api/v1/namespaces/default/endpoints/kubernetes")
    assert ep["subsets"][0]["ports"][0]["port"] == server.port
    assert not slices(api, "default", "kubernetes", "endpointslicemirroring-controller.k8s.io")
    # The apiserver writes the service's EndpointSlice too, as upstream's endpoint reconciler does.
    eps = get(api, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes")
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"
    assert eps["ports"][0]["port"] == server.port and eps["endpoints"][0]["addresses"] == ["127.0.0.1"]


def test_deployment_and_service_on_simulated_nodes(server, api, ns, simulated_nodes):
    server.kubectl("create", "deployment", "hello", "--image=busybox", "--replicas=2", "--port=8080", "-n", ns)
    server.kubectl("expose", "deployment", "hello", "--port=80", "--target-port=8080", "-n", ns)
    server.kubectl("rollout", "status", "deployment/hello", "-n", ns, "--timeout=30s")
    ips = {p["status"]["podIP"]: p for p in server.kubectl_json("get", "pods", "-l", "app=hello", "-n", ns)["items"]}
    assert len(ips) == 2
    want = sorted(ips)
    wait_for(lambda: sorted(a["ip"] for s in endpoints_of(api, ns, "hello") or [] for a in s.get("addresses", []))
             == want, timeout=15, what="both pods in the endpoints")
    out = server.kubectl("get", "endpoints", "hello", "-n", ns).stdout
    assert all(f"{ip}:8080" in out for ip in want)
    s = wait_for(lambda: [s for s in slices(api, ns, "hello") if len(s.get("endpoints") or []) == 2],
                 what="both pods in a slice")[0]
    zones = {node: server.kubectl_json("get", "node", node)["metadata"]["labels"]["topology.kubernetes.io/zone"]
             for node in simulated_nodes.node_names}
    for ep in s["endpoints"]:
        pod = ips[ep["addresses"][0]]
        assert ep["nodeName"] == pod["spec"]["nodeName"] and ep["zone"] == zones[ep["nodeName"]]
        assert ep["conditions"] == {"ready": True, "serving": True, "terminating": False}
    # Scaling down takes a pod out of both.
    server.kubectl("scale", "deployment", "hello", "--replicas=1", "-n", ns)
    wait_for(lambda: len([a for s in endpoints_of(api, ns, "hello") or [] for a in s.get("addresses", [])]) == 1,
             timeout=15, what="one address left")
