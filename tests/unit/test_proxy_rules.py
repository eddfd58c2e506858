"""The service proxy's iptables-restore text, compared with what kube-proxy writes for the same
Services (chain hashes and comments as in kube-proxy's own proxier tests)."""
import copy

from ketch.proxy.proxier import stale_udp_flows
from ketch.proxy.rules import NodeFacts, build_rules, endpoint_chain, probability, service_chain, service_ports

NODE = NodeFacts("node-1", (), "10.244.0.0/16")


def svc(name, cluster_ip, ports, ns="default", **spec):
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": cluster_ip, "type": spec.pop("type", "ClusterIP"), "ports": ports, **spec}}


def slice_(svc_name, ports, endpoints, ns="default"):
    return {"metadata": {"namespace": ns, "name": f"{svc_name}-abcde",
                         "labels": {"kubernetes.io/service-name": svc_name}},
            "addressType": "IPv4", "ports": ports,
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}, "nodeName": node}
                          for ip, ready, node in endpoints]}


def lines(text, table="nat"):
    out, current = [], None
    for line in text.splitlines():
        if line.startswith("*"):
            current = line[1:]
        elif current == table:
            out.append(line)
    return out


def test_hashes_are_kube_proxys():
    [sp] = service_ports([svc("svc1", "172.30.0.41", [{"name": "p80", "port": 80}], ns="ns1")],
                         [slice_("svc1", [{"name": "p80", "port": 80}], [("10.180.0.1", True, "")], ns="ns1")])
    assert service_chain("KUBE-SVC-", sp) == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert endpoint_chain(sp, sp.endpoints[0]) == "KUBE-SEP-SXIVWICOYRO3J4NJ"
    assert [probability(n) for n in (3, 2)] == ["0.3333333333", "0.5000000000"]


def test_cluster_ip_with_three_endpoints_spreads_randomly():
    text = build_rules([svc("kubia", "10.43.0.50", [{"port": 80, "targetPort": 8080}])],
                       [slice_("kubia", [{"port": 8080}], [("10.244.1.3", True, "n"), ("10.244.1.2", True, "n"),
                                                            ("10.244.2.2", True, "n")])], NODE)
    nat = lines(text)
    chain = service_chain("KUBE-SVC-", service_ports([svc("kubia", "10.43.0.50", [{"port": 80}])], [])[0])
    assert f":{chain} - [0:0]" in nat
    assert (f'-A KUBE-SERVICES -m comment --comment "default/kubia cluster IP" -m tcp -p tcp -d 10.43.0.50 '
            f'--dport 80 -j {chain}') in nat
    assert (f'-A {chain} -m comment --comment "default/kubia cluster IP" -m tcp -p tcp -d 10.43.0.50 --dport 80 '
            f'! -s 10.244.0.0/16 -j KUBE-MARK-MASQ') in nat
    balancing = [ln for ln in nat if ln.startswith(f"-A {chain} ") and "KUBE-SEP-" in ln]
    assert [ln.split(" -j ")[0].split("--comment ")[1] for ln in balancing] == [
        '"default/kubia -> 10.244.1.2:8080" -m statistic --mode random --probability 0.3333333333',
        '"default/kubia -> 10.244.1.3:8080" -m statistic --mode random --probability 0.5000000000',
        '"default/kubia -> 10.244.2.2:8080"']
    sep = balancing[0].split(" -j ")[1]
    assert f"-A {sep} -m comment --comment default/kubia -s 10.244.1.2 -j KUBE-MARK-MASQ" in nat      # hairpin
    assert f"-A {sep} -m comment --comment default/kubia -m tcp -p tcp -j DNAT --to-destination 10.244.1.2:8080" in nat
    assert "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully" in nat
    assert nat[-2].startswith('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule')
    assert not [ln for ln in lines(text, "filter") if "REJECT" in ln]


def test_only_ready_endpoints_get_traffic():
    text = build_rules([svc("web", "10.43.0.7", [{"port": 80}])],
                       [slice_("web", [{"port": 80}], [("10.244.0.5", False, "n"), ("10.244.0.6", True, "n")])], NODE)
    assert "10.244.0.6:80" in text and "10.244.0.5" not in text


def test_multi_port_service_gets_a_chain_per_port():
    ports = [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "https", "port": 8888, "targetPort": 8443}]
    text = build_rules([svc("kubia", "10.43.0.60", ports)],
                       [slice_("kubia", [{"name": "http", "port": 8080}, {"name": "https", "port": 8443}],
                               [("10.244.1.4", True, "n")])], NODE)
    nat = lines(text)
    http = [ln for ln in nat if '"default/kubia:http cluster IP"' in ln and ln.startswith("-A KUBE-SERVICES")]
    https = [ln for ln in nat if '"default/kubia:https cluster IP"' in ln and ln.startswith("-A KUBE-SERVICES")]
    assert len(http) == 1 and "--dport 80 " in http[0] and len(https) == 1 and "--dport 8888 " in https[0]
    assert http[0].split(" -j ")[1] != https[0].split(" -j ")[1]
    assert "DNAT --to-destination 10.244.1.4:8080" in text and "DNAT --to-destination 10.244.1.4:8443" in text


def test_target_port_by_name_resolves_through_the_slice_port_names():
    # Service port "http" targets the pod's port named "web"; the slice carries the number per pod.
    text = build_rules([svc("named", "10.43.0.61", [{"name": "http", "port": 80, "targetPort": "web"}])],
                       [slice_("named", [{"name": "http", "port": 3000}], [("10.244.1.9", True, "n")])], NODE)
    assert "-j DNAT --to-destination 10.244.1.9:3000" in text


def test_nodeport_goes_through_the_external_chain_and_masquerades():
    text = build_rules([svc("kubia-nodeport", "10.43.0.70", [{"port": 80, "targetPort": 8080, "nodePort": 30123}],
                            type="NodePort")],
                       [slice_("kubia-nodeport", [{"port": 8080}], [("10.244.1.2", True, "n")])], NODE)
    nat = lines(text)
    [np] = [ln for ln in nat if ln.startswith("-A KUBE-NODEPORTS")]
    ext = np.split(" -j ")[1]
    assert np == f"-A KUBE-NODEPORTS -m comment --comment default/kubia-nodeport -m tcp -p tcp --dport 30123 -j {ext}"
    assert ext.startswith("KUBE-EXT-")
    assert (f'-A {ext} -m comment --comment "masquerade traffic for default/kubia-nodeport external destinations" '
            f'-j KUBE-MARK-MASQ') in nat
    assert f"-A {ext} -j KUBE-SVC-{ext[len('KUBE-EXT-'):]}" in nat


def test_nodeport_on_given_node_ips():
    text = build_rules([], [], NodeFacts("n", ("192.168.50.2",), "10.244.0.0/16"))
    assert ('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule '
            'in this chain" -d 192.168.50.2 -j KUBE-NODEPORTS') in text


def test_session_affinity_client_ip_uses_recent():
    s = svc("kubia-sticky", "10.43.0.80", [{"port": 80}], sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}})
    text = build_rules([s], [slice_("kubia-sticky", [{"port": 80}], [("10.244.1.2", True, "n"),
                                                                      ("10.244.1.3", True, "n")])], NODE)
    nat = lines(text)
    [sp] = service_ports([s], [slice_("kubia-sticky", [{"port": 80}], [("10.244.1.2", True, "n"), ("10.244.1.3", True, "n")])])
    chain, sep = service_chain("KUBE-SVC-", sp), endpoint_chain(sp, sp.endpoints[0])
    rules = [ln for ln in nat if ln.startswith(f"-A {chain} ") and "KUBE-SEP-" in ln]
    assert rules[0] == (f'-A {chain} -m comment --comment "default/kubia-sticky -> 10.244.1.2:80" -m recent '
                        f'--name {sep} --rcheck --seconds 600 --reap -j {sep}')
    assert "--rcheck" in rules[1] and "--probability 0.5000000000" in rules[2] and "statistic" not in rules[3]
    assert (f"-A {sep} -m comment --comment default/kubia-sticky -m recent --name {sep} --set -m tcp -p tcp "
            f"-j DNAT --to-destination 10.244.1.2:80") in nat
    # The default timeout is kube-proxy's three hours.
    s["spec"].pop("sessionAffinityConfig")
    assert "--seconds 10800 " in build_rules([s], [slice_("kubia-sticky", [{"port": 80}], [("10.244.1.2", True, "n")])], NODE)


def test_service_without_endpoints_is_rejected_in_the_filter_table():
    text = build_rules([svc("lonely", "10.43.0.90", [{"port": 80, "nodePort": 30200}], type="NodePort")], [], NODE)
    flt = lines(text, "filter")
    assert ('-A KUBE-SERVICES -m comment --comment "default/lonely has no endpoints" -m tcp -p tcp -d 10.43.0.90 '
            '--dport 80 -j REJECT') in flt
    assert ('-A KUBE-EXTERNAL-SERVICES -m comment --comment "default/lonely has no endpoints" -m addrtype '
            '--dst-type LOCAL -m tcp -p tcp --dport 30200 -j REJECT') in flt
    assert "KUBE-SVC-" not in text and "10.43.0.90" not in "\n".join(lines(text))


def test_udp_external_ips_and_load_balancer():
    s = svc("dns", "10.43.0.10", [{"name": "dns", "port": 53, "protocol": "UDP"}], type="LoadBalancer",
            externalIPs=["192.168.99.11"])
    s["spec"]["ports"][0]["nodePort"] = 30053
    s["status"] = {"loadBalancer": {"ingress": [{"ip": "172.18.0.2"}]}}
    text = build_rules([s], [slice_("dns", [{"name": "dns", "port": 53, "protocol": "UDP"}],
                                    [("10.244.0.3", True, "n")])], NODE)
    nat = lines(text)
    assert any('"default/dns:dns external IP" -m udp -p udp -d 192.168.99.11 --dport 53 -j KUBE-EXT-' in ln for ln in nat)
    assert any('"default/dns:dns loadbalancer IP" -m udp -p udp -d 172.18.0.2 --dport 53 -j KUBE-EXT-' in ln for ln in nat)
    assert any("-m udp -p udp --dport 30053 -j KUBE-EXT-" in ln for ln in nat)
    assert "-m udp -p udp -j DNAT --to-destination 10.244.0.3:53" in text


def test_external_traffic_policy_local_uses_only_this_nodes_endpoints():
    s = svc("local", "10.43.0.95", [{"port": 80, "nodePort": 30300}], type="NodePort", externalTrafficPolicy="Local")
    sl = slice_("local", [{"port": 80}], [("10.244.1.2", True, "node-1"), ("10.244.2.2", True, "node-2")])
    nat = lines(build_rules([s], [sl], NODE))
    svl = [ln for ln in nat if ln.startswith("-A KUBE-SVL-") and "KUBE-SEP-" in ln]
    assert len(svl) == 1 and "10.244.1.2:80" in svl[0]
    # On a node without a local endpoint the node port drops (kube-proxy's "has no local endpoints").
    other = build_rules([s], [sl], NodeFacts("node-3", (), "10.244.0.0/16"))
    assert '"default/local has no local endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30300 -j DROP' in other
    # ... but pods and the node itself are short-cut to every endpoint through the EXT chain, as
    # kube-proxy does, and nothing else leaves it (no SVL chain to jump to).
    other_nat = lines(other)
    ext = [ln for ln in other_nat if ln.startswith("-A KUBE-EXT-")]
    assert any("-s 10.244.0.0/16 -j KUBE-SVC-" in ln for ln in ext)
    assert not any("KUBE-SVL-" in ln for ln in ext)
    assert any(ln.startswith("-A KUBE-NODEPORTS") and "--dport 30300 -j KUBE-EXT-" in ln for ln in other_nat)


def test_headless_and_external_name_services_get_no_rules():
    empty = build_rules([], [], NODE)
    headless = svc("db", "None", [{"port": 5432}])
    ext = {"metadata": {"namespace": "default", "name": "ext"}, "spec": {"type": "ExternalName", "externalName": "x.org"}}
    assert build_rules([headless, ext], [slice_("db", [{"port": 5432}], [("10.244.1.2", True, "n")])], NODE) == empty


def test_stale_chains_are_deleted():
    text = build_rules([], [], NODE, existing_nat_chains={"KUBE-SVC-AAAAAAAAAAAAAAAA", "KUBE-SEP-BBBBBBBBBBBBBBBB",
                                                            "CNI-HOSTPORT-DNAT", "KUBE-SERVICES"})
    nat = lines(text)
    assert "-X KUBE-SVC-AAAAAAAAAAAAAAAA" in nat and "-X KUBE-SEP-BBBBBBBBBBBBBBBB" in nat
    assert ":KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]" in nat    # flushed before being deleted
    assert "CNI-HOSTPORT-DNAT" not in text and "-X KUBE-SERVICES" not in nat


def test_removed_udp_endpoints_flush_conntrack():
    s = svc("dns", "10.43.0.10", [{"port": 53, "protocol": "UDP"}])
    two = service_ports([s], [slice_("dns", [{"port": 53, "protocol": "UDP"}], [("10.244.0.3", True, "n"),
                                                                                 ("10.244.0.4", True, "n")])])
    one = service_ports([s], [slice_("dns", [{"port": 53, "protocol": "UDP"}], [("10.244.0.3", True, "n")])])
    assert stale_udp_flows(two, one) == [("-p", "udp", "--orig-dst", "10.43.0.10", "--dst-nat", "10.244.0.4")]
    none = service_ports([s], [])
    assert stale_udp_flows(none, one) == [("-p", "udp", "--orig-dst", "10.43.0.10")]
    tcp = service_ports([svc("web", "10.43.0.11", [{"port": 80}])], [slice_("web", [{"port": 80}], [("10.244.0.5", True, "n")])])
    assert stale_udp_flows(tcp, []) == []


def test_partial_sync_rewrites_only_the_changed_service_chains():
    from ketch.proxy.rules import render
    svcs = [svc("a", "10.43.0.101", [{"port": 80}]), svc("b", "10.43.0.102", [{"port": 80}])]
    one = [slice_("a", [{"port": 80}], [("10.244.1.2", True, "n")]), slice_("b", [{"port": 80}], [("10.244.1.3", True, "n")])]
    first = render(service_ports(svcs, one), NODE)
    two = [one[0], slice_("b", [{"port": 80}], [("10.244.1.3", True, "n"), ("10.244.1.4", True, "n")])]
    second = render(service_ports(svcs, two), NODE, first.nat_chains, first.fingerprints)
    nat = lines(second.text)
    assert '-A KUBE-SERVICES -m comment --comment "default/a cluster IP"' in "\n".join(nat)   # shared chain: whole
    assert "10.244.1.2" not in second.text                                                # a's chains untouched
    assert "DNAT --to-destination 10.244.1.4:80" in second.text and "DNAT --to-destination 10.244.1.3:80" in second.text
    assert not [ln for ln in nat if ln.startswith("-X ")]
    assert second.nat_chains > first.nat_chains
    # Nothing changed: the same state, nothing to restore.
    assert render(service_ports(svcs, two), NODE, second.nat_chains, second.fingerprints).state == second.state
    # b goes away: its SVC and two SEP chains are deleted, a's stay.
    third = render(service_ports(svcs[:1], one[:1]), NODE, second.nat_chains, second.fingerprints)
    deleted = [ln for ln in lines(third.text) if ln.startswith("-X ")]
    assert len(deleted) == 3 and all(service_chain("KUBE-SVC-", sp) not in " ".join(deleted)
                                     for sp in service_ports(svcs[:1], []))


def test_render_cache_reuses_unchanged_ports_and_gives_the_same_text():
    from ketch.proxy.rules import render
    svcs = [svc("a", "10.43.0.101", [{"port": 80}], type="NodePort"), svc("b", "10.43.0.102", [{"port": 80}])]
    svcs[0]["spec"]["ports"][0]["nodePort"] = 30080
    one = [slice_("a", [{"port": 80}], [("10.244.1.2", True, "n")]), slice_("b", [{"port": 80}], [])]
    two = [one[0], slice_("b", [{"port": 80}], [("10.244.1.3", True, "n")])]
    cache: dict = {}
    first = render(service_ports(svcs, one), NODE, cache=cache)
    assert first.text == render(service_ports(svcs, one), NODE).text     # filter rules (REJECT) included
    kept = cache["default/a/tcp"]
    second = render(service_ports(svcs, two), NODE, first.nat_chains, first.fingerprints, cache)
    assert second.text == render(service_ports(svcs, two), NODE, first.nat_chains, first.fingerprints).text
    assert cache["default/a/tcp"][1] is kept[1]                        # a: reused, not rendered again
    other = NodeFacts("node-2", ("192.0.2.1",), "10.244.0.0/16")       # another node: nothing reused
    assert render(service_ports(svcs, two), other, cache=cache).text == render(service_ports(svcs, two), other).text


def test_service_ports_cache_follows_resource_versions():
    svcs = [svc("a", "10.43.0.101", [{"port": 80}]), svc("b", "10.43.0.102", [{"port": 80}])]
    for i, s in enumerate(svcs):
        s["metadata"].update(uid=f"u{i}", resourceVersion="1")
    slices = [slice_("a", [{"port": 80}], [("10.244.1.2", True, "n")]),
              slice_("b", [{"port": 80}], [("10.244.1.3", True, "n")])]
    for s in slices:
        s["metadata"]["resourceVersion"] = "1"
    cache: dict = {}
    first = service_ports(svcs, slices, cache)
    changed = copy.deepcopy(slices[1])
    changed["metadata"]["resourceVersion"] = "2"
    changed["endpoints"][0]["addresses"] = ["10.244.1.9"]
    second = service_ports(svcs, [slices[0], changed], cache)
    assert second[0] is first[0], "a's ports are reused while nothing of a changed"
    assert [e.ip for e in second[1].endpoints] == ["10.244.1.9"]
    assert second == service_ports(svcs, [slices[0], changed]), "the cache never changes the answer"
    assert service_ports(svcs[:1], slices, cache) == service_ports(svcs[:1], slices) and len(cache) == 1
