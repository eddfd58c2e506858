"""Which namespace a pod's sysctl lands in, and which ones a pod may not set (runc's rules)."""

import pytest

from ketch.agent.runtime.namespaces import _sysctl_path, check_sysctls


@pytest.mark.parametrize("name, path", [
    ("net.ipv4.ip_unprivileged_port_start", "/proc/sys/net/ipv4/ip_unprivileged_port_start"),
    ("net/ipv4/conf/eth0.100/forwarding", "/proc/sys/net/ipv4/conf/eth0.100/forwarding"),
    ("net.ipv4.conf.eth0/100.forwarding", "/proc/sys/net/ipv4/conf/eth0.100/forwarding"),
    ("kernel.shm_rmid_forced", "/proc/sys/kernel/shm_rmid_forced"),
])
def test_sysctl_names_in_either_form(name, path):
    assert _sysctl_path(name) == path


def test_a_pod_with_namespaces_of_its_own_may_set_namespaced_sysctls():
    check_sysctls({"net.core.somaxconn": "1024", "kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "20",
                   "kernel.domainname": "example"}, own_net=True, own_ipc=True, own_uts=True)


@pytest.mark.parametrize("sysctl, shared, message", [
    ("vm.swappiness", "", 'sysctl "vm.swappiness" is not in a separate kernel namespace'),
    ("kernel.domainname", "uts", 'sysctl "kernel.domainname" is not in a separate kernel namespace'),
    ("net.core.somaxconn", "net", 'sysctl "net.core.somaxconn" not allowed in host network namespace'),
    ("kernel.msgmax", "ipc", 'sysctl "kernel.msgmax" is not allowed in the hosts ipc namespace'),
    ("net.ipv4/../../vm/swappiness", "", 'invalid sysctl name "net.ipv4/../../vm/swappiness"'),
])
def test_sysctls_outside_the_pods_namespaces_are_refused(sysctl, shared, message):
    own = {k: k != shared for k in ("net", "ipc", "uts")}
    with pytest.raises(ValueError) as refused:
        check_sysctls({sysctl: "1"}, own_net=own["net"], own_ipc=own["ipc"], own_uts=own["uts"])
    assert str(refused.value) == message
