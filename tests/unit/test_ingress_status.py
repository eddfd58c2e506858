"""Ingress status with several agents (each its own --ingress-address) on one Ingress: each adds
its entry and removes only its own, so their writes do not undo each other."""
from types import SimpleNamespace

from ketch.ingress.controller import IngressController


def desired(ip: str, served: bool, current: list[dict]):
    me = SimpleNamespace(status_ip=ip, served={"default/web"} if served else set())
    ing = {"metadata": {"name": "web", "namespace": "default"},
           "status": {"loadBalancer": {"ingress": current}} if current else {}}
    return IngressController.desired_status(me, ing)


def test_agents_keep_each_others_entries():
    a, b = {"ip": "127.0.0.1"}, {"ip": "10.0.0.2"}
    assert desired("127.0.0.1", True, []) == [a]
    assert desired("10.0.0.2", True, [a]) == [a, b]            # added beside the other agent's
    assert desired("127.0.0.1", True, [a, b]) is None          # ours is there: nothing to write
    assert desired("10.0.0.2", True, [a, b]) is None
    assert desired("127.0.0.1", False, [a, b]) == [b]          # no longer ours: only ours goes
    assert desired("127.0.0.1", False, [b]) is None
    assert desired("127.0.0.1", True, [{"hostname": "lb.example", "ip": "127.0.0.1"}]) == \
        [{"hostname": "lb.example", "ip": "127.0.0.1"}, a]
