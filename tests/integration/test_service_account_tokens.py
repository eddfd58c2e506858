"""The TokenRequest API against the real server: `kubectl create token`, the token as a credential,
its bound pod and account revoking it, and upstream's errors."""
from __future__ import annotations

import json

import pytest

from helpers.cluster import jwt_claims, unique
from helpers.http import Api


@pytest.fixture(scope="module")
def api(server):
    return Api(server.kubeconfig)


@pytest.fixture
def ns(api):
    name = unique("tok")
    status, body, _ = api.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201, body
    yield name


def as_token(api: Api, token: str, path: str):
    return api.request("GET", path, anonymous=True, headers={"Authorization": f"Bearer {token}"})


def test_kubectl_create_token_and_its_use(server, api, ns):
    server.kubectl("create", "serviceaccount", "robot", "-n", ns)
    token = server.kubectl("create", "token", "robot", "-n", ns, "--duration", "20m").stdout.strip()
    got = jwt_claims(token)
    assert got["sub"] == f"system:serviceaccount:{ns}:robot" and got["exp"] - got["iat"] == 1200
    assert got["aud"] == ["https://kubernetes.default.svc.cluster.local"]
    assert got["kubernetes.io"]["serviceaccount"]["name"] == "robot"
    status, review, _ = api.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                    {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
                                    anonymous=True, headers={"Authorization": f"Bearer {token}"})
    assert status == 201 and review["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:robot"
    assert f"system:serviceaccounts:{ns}" in review["status"]["userInfo"]["groups"]
    assert as_token(api, token, f"/api/v1/namespaces/{ns}/serviceaccounts")[0] == 200
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert as_token(api, tampered, f"/api/v1/namespaces/{ns}/serviceaccounts")[0] == 401
    server.kubectl("delete", "serviceaccount", "robot", "-n", ns)
    assert as_token(api, token, f"/api/v1/namespaces/{ns}/serviceaccounts")[0] == 401  # the account went


def test_a_pod_bound_token_lives_as_long_as_the_pod(server, api, ns):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"schedulerName": "nobody", "containers": [{"name": "c", "image": "busybox"}]}}
    status, created, _ = api.request("POST", f"/api/v1/namespaces/{ns}/pods", pod)
    assert status == 201
    path = f"/api/v1/namespaces/{ns}/serviceaccounts/default/token"
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p",
                                                 "uid": created["metadata"]["uid"]}}}
    status, answer, _ = api.request("POST", path, request)
    assert status == 201 and answer["kind"] == "TokenRequest" and answer["spec"]["expirationSeconds"] == 3600
    assert answer["status"]["expirationTimestamp"].endswith("Z")
    token = answer["status"]["token"]
    assert jwt_claims(token)["kubernetes.io"]["pod"] == {"name": "p", "uid": created["metadata"]["uid"]}
    assert as_token(api, token, f"/api/v1/namespaces/{ns}/pods")[0] == 200
    # a reference to another pod of that name is refused
    wrong = json.loads(json.dumps(request))
    wrong["spec"]["boundObjectRef"]["uid"] = "0000"
    status, body, _ = api.request("POST", path, wrong)
    assert status == 409 and "does not match the UID in record" in body["message"]
    status, body, _ = api.request("DELETE", f"/api/v1/namespaces/{ns}/pods/p?gracePeriodSeconds=0")
    assert status == 200
    assert as_token(api, token, f"/api/v1/namespaces/{ns}/pods")[0] == 401  # the pod went
    node = api.request("GET", "/api/v1/nodes")[1]["items"][0]["metadata"]
    request["spec"]["boundObjectRef"] = {"kind": "Node", "apiVersion": "v1", "name": node["name"]}
    status, answer, _ = api.request("POST", path, request)
    assert status == 201 and jwt_claims(answer["status"]["token"])["kubernetes.io"]["node"] == {
        "name": node["name"], "uid": node["uid"]}
    assert as_token(api, answer["status"]["token"], f"/api/v1/namespaces/{ns}/pods")[0] == 200


def test_token_request_errors(api, ns):
    path = f"/api/v1/namespaces/{ns}/serviceaccounts/default/token"
    short = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 60}}
    status, body, _ = api.request("POST", path, short)
    assert status == 422 and body["message"] == (
        'TokenRequest.authentication.k8s.io "default" is invalid: spec.expirationSeconds: Invalid value: 60: '
        "may not specify a duration less than 10 minutes")
    status, body, _ = api.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/ghost/token",
                                  {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})
    assert status == 404 and body["message"] == 'serviceaccounts "ghost" not found'
    status, body, _ = api.request("POST", path, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                                 "spec": {"boundObjectRef": {"kind": "Pod", "name": "none"}}})
    assert status == 404 and body["message"] == 'pods "none" not found'
    status, body, _ = api.request("POST", path, "{not json")
    assert status == 400
