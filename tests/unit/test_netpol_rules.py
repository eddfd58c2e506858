"""The NetworkPolicy renderer: its iptables-restore text, run through a small interpreter of the
rules it writes, so each test asks what a user asks: does this connection get through?"""
import ipaddress
import shlex

from ketch.netpol.rules import (JUMP_COMMENT, TOP_CHAIN, agent_dns_peers, cidr_minus, jump_fix, pod_chain, policy_chain,
                                render)

NODE = "node-1"


def pod(name, ip, ns="default", labels=None, node=NODE, ports=(), **spec):
    return {"metadata": {"namespace": ns, "name": name, "labels": labels or {}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
                {"name": n, "containerPort": p, "protocol": proto} for n, p, proto in ports]}], **spec},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}


def namespace(name, **labels):
    return {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}}}


def policy(name, ns="default", selector=None, types=None, ingress=None, egress=None):
    spec = {"podSelector": selector or {}}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    spec["policyTypes"] = types or (["Ingress", "Egress"] if egress is not None else ["Ingress"])
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


class Rules:
    """Evaluates the rendered filter rules for a new connection, as FORWARD would."""

    def __init__(self, text):
        self.chains = {}
        for line in text.splitlines():
            if line.startswith(":"):
                self.chains.setdefault(line[1:].split()[0], [])
            elif line.startswith("-A "):
                args = shlex.split(line)
                self.chains.setdefault(args[1], []).append(args[2:])

    def allowed(self, src, dst, port=80, proto="tcp", from_node=False):
        packet = {"src": src, "dst": dst, "port": port, "proto": proto, "local": from_node, "mark": 0}
        return self._run(TOP_CHAIN, packet) != "DROP"

    def _run(self, chain, pk):
        for rule in self.chains[chain]:
            if not self._matches(rule, pk):
                continue
            target = rule[rule.index("-j") + 1]
            if target == "MARK":
                value, mask = (int(x, 16) for x in rule[rule.index("--set-xmark") + 1].split("/"))
                pk["mark"] = (pk["mark"] & ~mask) | value
            elif target in ("RETURN", "DROP"):
                return target
            else:
                if self._run(target, pk) == "DROP":
                    return "DROP"
        return "RETURN"

    @staticmethod
    def _matches(rule, pk):
        i = 0
        while i < len(rule):
            a = rule[i]
            if a in ("-s", "-d"):
                if ipaddress.ip_address(pk["src" if a == "-s" else "dst"]) not in ipaddress.ip_network(rule[i + 1]):
                    return False
                i += 2
            elif a == "-p":
                if pk["proto"] != rule[i + 1]:
                    return False
                i += 2
            elif a == "--dport":
                lo, _, hi = rule[i + 1].partition(":")
                if not int(lo) <= pk["port"] <= int(hi or lo):
                    return False
                i += 2
            elif a == "--ctstate":
                return False            # every packet here starts a new connection
            elif a == "--src-type":
                if not pk["local"]:
                    return False
                i += 2
            elif a == "--mark":
                value, mask = (int(x, 16) for x in rule[i + 1].split("/"))
                if pk["mark"] & mask != value:
                    return False
                i += 2
            elif a == "-j":
                return True
            elif a == "--comment" or a == "-m" or a == "--set-xmark":
                i += 2
            else:
                i += 1
        return True


def rules(policies, pods, namespaces=(), node=NODE):
    return Rules(render(policies, pods, list(namespaces), node).text)


A, B, C = "10.42.0.2", "10.42.0.3", "10.42.0.4"
REMOTE = "10.42.1.2"
PODS = [pod("web", A, labels={"app": "web"}, ports=[("http", 80, "TCP")]),
        pod("client", B, labels={"role": "client"}),
        pod("other", C, labels={"role": "other"}),
        pod("far", REMOTE, ns="prod", labels={"role": "client"}, node="node-2")]
NAMESPACES = [namespace("default"), namespace("prod", team="blue")]


def test_no_policy_allows_everything():
    r = rules([], PODS, NAMESPACES)
    assert r.allowed(B, A) and r.allowed(REMOTE, A) and r.allowed(A, "8.8.8.8")
    assert r.chains[TOP_CHAIN] and all(not c.startswith("KUBE-POD-FW-") for c in r.chains)


def test_default_deny_ingress_isolates_only_the_selected_pods():
    r = rules([policy("deny")], PODS, NAMESPACES)
    assert not r.allowed(B, A) and not r.allowed(REMOTE, A) and not r.allowed(A, B)
    assert r.allowed(A, REMOTE)                       # egress is not isolated
    assert r.allowed("10.42.0.1", A, from_node=True)  # the kubelet's probes
    assert r.allowed(A, A)                            # a pod reaches itself (hairpin through a service)
    # In another namespace nothing changes.
    r = rules([policy("deny", ns="prod")], PODS, NAMESPACES)
    assert r.allowed(B, A)


def test_pod_selector_allows_the_labelled_pods_of_the_policys_namespace():
    allow = policy("allow", selector={"matchLabels": {"app": "web"}},
                   ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}])
    r = rules([allow], PODS, NAMESPACES)
    assert r.allowed(B, A) and not r.allowed(C, A)
    assert not r.allowed(REMOTE, A)          # role=client, but in namespace prod
    assert r.allowed(A, B) and r.allowed(C, B)   # client is not selected: not isolated


def test_policies_add_up():
    one = policy("one", selector={"matchLabels": {"app": "web"}},
                 ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}])
    two = policy("two", selector={"matchLabels": {"app": "web"}},
                 ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "other"}}}]}])
    r = rules([one, two, policy("deny")], PODS, NAMESPACES)
    assert r.allowed(B, A) and r.allowed(C, A) and not r.allowed(REMOTE, A)


def test_namespace_selector_alone_and_combined_with_a_pod_selector():
    by_ns = policy("ns", ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}])
    r = rules([by_ns], PODS + [pod("other-far", "10.42.1.3", ns="prod", node="node-2")], NAMESPACES)
    assert r.allowed(REMOTE, A) and r.allowed("10.42.1.3", A) and not r.allowed(B, A)
    both = policy("both", ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}},
                                              "podSelector": {"matchLabels": {"role": "client"}}}]}])
    r = rules([both], PODS + [pod("other-far", "10.42.1.3", ns="prod", node="node-2")], NAMESPACES)
    assert r.allowed(REMOTE, A) and not r.allowed("10.42.1.3", A) and not r.allowed(B, A)
    # The namespace's own name label selects it too.
    named = policy("named", ingress=[{"from": [{"namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["prod"]}]}}]}])
    assert rules([named], PODS, NAMESPACES).allowed(REMOTE, A)


def test_ports_numbers_ranges_protocols_and_named_ports():
    p = policy("ports", ingress=[{"ports": [{"protocol": "TCP", "port": 8080},
                                            {"protocol": "UDP", "port": 5000, "endPort": 5010},
                                            {"protocol": "SCTP"}]}])
    r = rules([p], PODS, NAMESPACES)
    assert r.allowed(B, A, 8080) and not r.allowed(B, A, 80) and not r.allowed(B, A, 8080, "udp")
    assert r.allowed(B, A, 5005, "udp") and r.allowed(B, A, 5010, "udp") and not r.allowed(B, A, 5011, "udp")
    assert r.allowed(B, A, 9999, "sctp")
    # A named port is the selected pod's own: web's "http" is 80; the client has no such port.
    named = policy("named", ingress=[{"ports": [{"protocol": "TCP", "port": "http"}]}])
    r = rules([named], PODS, NAMESPACES)
    assert r.allowed(C, A, 80) and not r.allowed(C, A, 81) and not r.allowed(A, B, 80)


def test_ip_block_with_except():
    p = policy("block", ingress=[{"from": [{"ipBlock": {"cidr": "10.42.0.0/16", "except": ["10.42.1.0/24"]}}]}])
    r = rules([p], PODS, NAMESPACES)
    assert r.allowed(B, A) and not r.allowed(REMOTE, A) and not r.allowed("192.168.0.1", A)
    assert cidr_minus("10.0.0.0/8", ["10.0.0.0/8"]) == []
    assert cidr_minus("10.0.0.0/30", ["10.0.0.1/32"]) == ["10.0.0.0/32", "10.0.0.2/31"]
    assert cidr_minus("10.0.0.5/24", ["192.168.0.0/16"]) == ["10.0.0.0/24"]


def test_egress_deny_and_allow_by_destination():
    r = rules([policy("deny-out", types=["Egress"])], PODS, NAMESPACES)
    assert not r.allowed(A, B) and not r.allowed(A, "8.8.8.8")
    assert not r.allowed(B, A)          # B's own egress is denied (every pod of the namespace is selected)
    assert r.allowed(REMOTE, A)         # ingress is not isolated
    out = policy("out", selector={"matchLabels": {"app": "web"}}, egress=[
        {"to": [{"podSelector": {"matchLabels": {"role": "client"}}}], "ports": [{"protocol": "TCP", "port": 80}]},
        {"to": [{"ipBlock": {"cidr": "192.168.0.0/24"}}]}], types=["Egress"])
    r = rules([out], PODS, NAMESPACES)
    assert r.allowed(A, B, 80) and not r.allowed(A, B, 81) and not r.allowed(A, C, 80)
    assert r.allowed(A, "192.168.0.9", 443) and not r.allowed(A, "192.168.1.9")
    # Egress to a named port: the destination pod's number.
    named = policy("named", selector={"matchLabels": {"role": "client"}}, types=["Egress"],
                   egress=[{"ports": [{"port": "http"}]}])
    r = rules([named], PODS, NAMESPACES)
    assert r.allowed(B, A, 80) and not r.allowed(B, A, 81) and not r.allowed(B, C, 80)


def test_both_ends_must_allow():
    deny_out = policy("deny-out", selector={"matchLabels": {"role": "client"}}, types=["Egress"])
    allow_in = policy("allow-in", selector={"matchLabels": {"app": "web"}}, ingress=[{}])
    r = rules([deny_out, allow_in], PODS, NAMESPACES)
    assert not r.allowed(B, A) and r.allowed(C, A)


def test_allow_all_and_empty_from():
    r = rules([policy("deny"), policy("all", ingress=[{}])], PODS, NAMESPACES)
    assert r.allowed(B, A) and r.allowed("192.168.0.1", A)
    r = rules([policy("all-out", types=["Egress"], egress=[{}])], PODS, NAMESPACES)
    assert r.allowed(A, "8.8.8.8")


def test_selectors_only_count_running_pods_with_ips_and_never_the_host_network():
    pending = pod("pending", "", labels={"role": "client"})
    done = pod("done", "10.42.0.9", labels={"role": "client"})
    done["status"]["phase"] = "Succeeded"
    host = pod("host", "10.0.0.1", labels={"role": "client"}, hostNetwork=True)
    allow = policy("allow", ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}])
    r = rules([allow], PODS + [pending, done, host], NAMESPACES)
    assert r.allowed(B, A) and not r.allowed("10.42.0.9", A) and not r.allowed("10.0.0.1", A)


def test_only_this_nodes_pods_get_chains_and_names_are_hashed():
    text = render([policy("deny")], PODS, NAMESPACES, NODE).text
    assert f":{pod_chain('default', 'web', 'Ingress')} - [0:0]" in text
    assert f":{policy_chain('default', 'deny', 'Ingress')} - [0:0]" in text
    assert all(len(c) <= 28 for c in (pod_chain("default", "web", "Ingress"), policy_chain("ns", "n", "Egress")))
    far = render([policy("deny", ns="prod")], PODS, NAMESPACES, NODE).text
    assert "KUBE-POD-FW-" not in far and "KUBE-NWPLCY-" not in far   # far runs on node-2
    assert render([policy("deny")], list(reversed(PODS)), NAMESPACES, NODE).text == text


def test_stale_chains_are_deleted():
    old = {pod_chain("default", "gone", "Ingress"), policy_chain("default", "gone", "Ingress"), "KUBE-FORWARD"}
    text = render([], PODS, NAMESPACES, NODE, existing_chains=old).text
    for chain in sorted(old - {"KUBE-FORWARD"}):
        assert f":{chain} - [0:0]" in text and f"-X {chain}" in text
    assert "KUBE-FORWARD" not in text


JUMP = f'-A FORWARD -m comment --comment "{JUMP_COMMENT}" -j {TOP_CHAIN}'
PROXY = ['-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
         '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
         '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD']


def test_the_jump_goes_after_kube_proxys_rejects_and_before_its_accepts():
    assert jump_fix([]) == [f'-I FORWARD 1 -m comment --comment "{JUMP_COMMENT}" -j {TOP_CHAIN}']
    assert jump_fix(PROXY) == [f'-I FORWARD 3 -m comment --comment "{JUMP_COMMENT}" -j {TOP_CHAIN}']
    assert jump_fix(PROXY[:2] + [JUMP] + PROXY[2:]) == []
    # The proxy prepended its jumps after ours: ours moves back in front of KUBE-FORWARD.
    moved = jump_fix(PROXY + [JUMP, "-A FORWARD -j CNI-FORWARD"])
    assert moved == [JUMP.replace("-A ", "-D ", 1), JUMP.replace("-A FORWARD", "-I FORWARD 3", 1)]
    assert jump_fix([JUMP, JUMP])[:2] == [JUMP.replace("-A ", "-D ", 1)] * 2


def test_the_agents_dns_servers_are_kube_dns_pods_for_egress_policies():
    dns_slice = {"metadata": {"namespace": "kube-system", "name": "kube-dns-node-2", "labels": {
        "kubernetes.io/service-name": "kube-dns", "endpointslice.kubernetes.io/managed-by": "agent.ketch.io"}},
        "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["172.30.0.3"], "nodeName": "node-2"}]}
    other = {**dns_slice, "metadata": {**dns_slice["metadata"], "labels": {"kubernetes.io/service-name": "web"}}}
    peers = agent_dns_peers([dns_slice, other])
    assert [(p.namespace, p.ip, p.labels) for p in peers] == [("kube-system", "172.30.0.3", {"k8s-app": "kube-dns"})]
    allow_dns = policy("dns", types=["Egress"], egress=[{
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": "dns-tcp"}]}])
    r = Rules(render([allow_dns], PODS, NAMESPACES, NODE, extra_peers=peers).text)
    assert r.allowed(A, "172.30.0.3", 53, "udp") and r.allowed(A, "172.30.0.3", 53, "tcp")
    assert not r.allowed(A, "172.30.0.3", 80) and not r.allowed(A, B, 53, "udp")


def test_a_malformed_rule_allows_nothing_and_breaks_nothing_else():
    bad = policy("bad", ingress=[{"ports": [{"port": 1.5j}]}, {"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}])
    r = rules([bad], PODS, NAMESPACES)
    assert r.allowed(B, A) and not r.allowed(C, A)
