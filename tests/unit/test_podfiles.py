"""The sandbox's /etc/hosts, /etc/resolv.conf and /etc/hostname, with the kubelet's exact text."""
from __future__ import annotations

import pytest

from ketch.agent.podfiles import (PodFilesError, hosts_file_content, pod_dns_config, pod_hostname,
                                  resolv_conf_content, sandbox_hostname, write_pod_files)

LOCALHOST = ("# Kubernetes-managed hosts file.\n"
             "127.0.0.1\tlocalhost\n"
             "::1\tlocalhost ip6-localhost ip6-loopback\n"
             "fe00::0\tip6-localnet\n"
             "fe00::0\tip6-mcastprefix\n"
             "fe00::1\tip6-allnodes\n"
             "fe00::2\tip6-allrouters\n")


def pod(name="node-js-pod", namespace="default", **spec) -> dict:
    return {"metadata": {"name": name, "namespace": namespace, "uid": "u-1"}, "spec": {"containers": [], **spec}}


@pytest.fixture
def node_resolv(tmp_path):
    path = tmp_path / "node-resolv.conf"
    path.write_text("# node\nnameserver 192.168.1.1\nnameserver 192.168.1.2\nsearch corp.example. lab.example\n"
                    "options timeout:2 attempts:3\n")
    return str(path)


def test_hosts_file_plain_pod():
    assert hosts_file_content(pod(), ["10.244.0.5"], "cluster.local") == LOCALHOST + "10.244.0.5\tnode-js-pod\n"


def test_hosts_file_hostname_subdomain_and_aliases():
    p = pod(name="web-0", namespace="shop", hostname="web-0", subdomain="nginx",
            hostAliases=[{"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]},
                         {"ip": "10.1.2.3", "hostnames": ["foo.remote"]}])
    assert hosts_file_content(p, ["10.244.0.7", "fd00::7"], "cluster.local") == (
        LOCALHOST
        + "10.244.0.7\tweb-0.nginx.shop.svc.cluster.local\tweb-0\n"
        + "fd00::7\tweb-0.nginx.shop.svc.cluster.local\tweb-0\n"
        + "\n# Entries added by HostAliases.\n"
        + "127.0.0.1\tfoo.local\tbar.local\n"
        + "10.1.2.3\tfoo.remote\n")


def test_hosts_file_host_network_copies_the_node_file(tmp_path):
    node_hosts = tmp_path / "hosts"
    node_hosts.write_text("127.0.0.1 localhost\n192.168.1.10 node-1\n")
    p = pod(hostNetwork=True, hostAliases=[{"ip": "1.2.3.4", "hostnames": ["x"]}])
    assert hosts_file_content(p, ["192.168.1.10"], "cluster.local", str(node_hosts)) == (
        "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n192.168.1.10 node-1\n"
        "\n# Entries added by HostAliases.\n1.2.3.4\tx\n")


def test_pod_hostname_truncation():
    assert pod_hostname(pod()) == "node-js-pod"
    assert pod_hostname(pod(hostname="custom")) == "custom"
    long = "a" * 62 + "-b" + "c" * 10
    assert pod_hostname(pod(name=long)) == "a" * 62  # cut at 63, then the trailing '-' dropped


def test_sandbox_hostname_fqdn_and_errors():
    p = pod(name="web-0", namespace="shop", hostname="web-0", subdomain="nginx", setHostnameAsFQDN=True)
    assert sandbox_hostname(p, "cluster.local") == "web-0.nginx.shop.svc.cluster.local"
    assert sandbox_hostname(pod(hostNetwork=True), "cluster.local", "node-1") == "node-1"
    with pytest.raises(PodFilesError, match='^pod Hostname "Bad_Name" is not a valid DNS label: '):
        sandbox_hostname(pod(hostname="Bad_Name"), "cluster.local")
    too_long = pod(name="h", hostname="h" * 40, subdomain="s" * 20, setHostnameAsFQDN=True)
    with pytest.raises(PodFilesError, match=r"FQDN h{40}\.s{20}\.default\.svc\.cluster\.local is too long "
                                            r"\(64 characters is the max, 87 characters requested\)"):
        sandbox_hostname(too_long, "cluster.local")


def test_cluster_first_resolv_conf(node_resolv):
    dns, warnings = pod_dns_config(pod(namespace="shop"), ["10.43.0.10"], "cluster.local", node_resolv)
    assert resolv_conf_content(dns) == ("search shop.svc.cluster.local svc.cluster.local cluster.local "
                                        "corp.example lab.example\n"
                                        "nameserver 10.43.0.10\n"
                                        "options ndots:5\n")
    assert warnings == []


def test_cluster_first_with_empty_node_search(tmp_path):
    resolv = tmp_path / "r"
    resolv.write_text("nameserver 1.1.1.1\n")
    dns, _ = pod_dns_config(pod(), ["10.43.0.10"], "cluster.local", str(resolv))
    assert resolv_conf_content(dns) == ("search default.svc.cluster.local svc.cluster.local cluster.local\n"
                                        "nameserver 10.43.0.10\noptions ndots:5\n")


def test_default_policy_and_host_network_use_the_node_file(node_resolv):
    expected = ("search corp.example lab.example\nnameserver 192.168.1.1\nnameserver 192.168.1.2\n"
                "options timeout:2 attempts:3\n")
    for p in (pod(dnsPolicy="Default"), pod(hostNetwork=True)):  # ClusterFirst falls back on host network
        dns, _ = pod_dns_config(p, ["10.43.0.10"], "cluster.local", node_resolv)
        assert resolv_conf_content(dns) == expected
    dns, _ = pod_dns_config(pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"), ["10.43.0.10"],
                            "cluster.local", node_resolv)
    assert dns.servers == ["10.43.0.10"]


def test_none_policy_and_dns_config_merging(node_resolv):
    p = pod(dnsPolicy="None", dnsConfig={"nameservers": ["1.2.3.4"], "searches": ["ns1.svc.cluster-domain.example"],
                                         "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]})
    dns, _ = pod_dns_config(p, ["10.43.0.10"], "cluster.local", node_resolv)
    assert resolv_conf_content(dns) == ("search ns1.svc.cluster-domain.example\nnameserver 1.2.3.4\n"
                                        "options ndots:2 edns0\n")
    p = pod(dnsConfig={"nameservers": ["10.43.0.10", "8.8.8.8"], "searches": ["cluster.local", "extra.example"],
                       "options": [{"name": "ndots", "value": "1"}, {"name": "single-request"}]})
    dns, _ = pod_dns_config(p, ["10.43.0.10"], "cluster.local", node_resolv)
    assert dns.servers == ["10.43.0.10", "8.8.8.8"]  # duplicates dropped
    assert dns.searches == ["default.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example",
                            "lab.example", "extra.example"]
    assert dns.options == ["ndots:1", "single-request"]


def test_limits_and_their_events(node_resolv):
    p = pod(dnsPolicy="None", dnsConfig={"nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"],
                                         "searches": [f"d{i}.example" for i in range(40)]})
    dns, warnings = pod_dns_config(p, [], "cluster.local", node_resolv)
    assert dns.servers == ["1.1.1.1", "2.2.2.2", "3.3.3.3"]
    assert len(dns.searches) == 32
    assert warnings[0] == ("DNSConfigForming", "Nameserver limits were exceeded, some nameservers have been omitted, "
                                               "the applied nameserver line is: 1.1.1.1 2.2.2.2 3.3.3.3")
    assert warnings[1][1].startswith("Search Line limits were exceeded, some search paths have been omitted, "
                                     "the applied search line is: d0.example d1.example")


def test_missing_cluster_dns_falls_back_to_default(node_resolv):
    dns, warnings = pod_dns_config(pod(), [], "cluster.local", node_resolv)
    assert dns.servers == ["192.168.1.1", "192.168.1.2"]
    assert warnings == [("MissingClusterDNS", 'pod: "node-js-pod_default(u-1)". kubelet does not have ClusterDNS IP '
                                              'configured and cannot create Pod using "ClusterFirst" policy. '
                                              'Falling back to "Default" policy.')]


def test_write_pod_files(tmp_path, node_resolv):
    files = write_pod_files(tmp_path / "pods" / "u-1", pod(hostname="web", subdomain="svc"), ["10.244.0.9"],
                            cluster_dns=["10.43.0.10"], node_resolv_conf=node_resolv)
    assert files.hosts == tmp_path / "pods" / "u-1" / "etc-hosts"
    assert files.hosts.read_text().endswith("10.244.0.9\tweb.svc.default.svc.cluster.local\tweb\n")
    assert files.resolv_conf.read_text().startswith("search default.svc.cluster.local svc.cluster.local cluster.local")
    assert files.hostname.read_text() == "web\n"
    assert oct(files.hosts.stat().st_mode & 0o777) == "0o644"
    assert not list((tmp_path / "pods" / "u-1").glob("*.tmp"))
