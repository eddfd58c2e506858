"""OCI spec generation, cgroup layout and CNI chaining of the runtime, without running anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from ketch.agent.runtime import api
from ketch.agent.runtime.cgroups import CgroupLayout, pod_cgroup, shares_to_weight
from ketch.agent.runtime.cni import CNI, CNIConfig, port_mappings_for_cni, result_ips
from ketch.agent.runtime.oci import (DEFAULT_CAPABILITIES, SandboxNamespaces, capabilities,
                                     container_spec, merge_env, process_args, resolve_user)
from ketch.agent.runtime.seccomp import runtime_default, seccomp_section


@pytest.mark.parametrize("command,args,image,expected", [
    ([], [], {"Entrypoint": ["/ep"], "Cmd": ["a"]}, ["/ep", "a"]),
    ([], ["b"], {"Entrypoint": ["/ep"], "Cmd": ["a"]}, ["/ep", "b"]),
    (["/cmd"], [], {"Entrypoint": ["/ep"], "Cmd": ["a"]}, ["/cmd"]),  # Cmd is dropped too
    (["/cmd"], ["x"], {"Entrypoint": ["/ep"], "Cmd": ["a"]}, ["/cmd", "x"]),
    ([], [], {"Cmd": ["sh"]}, ["sh"]),
])
def test_command_and_args_merge_as_the_kubelet_does(command, args, image, expected):
    assert process_args(command, args, image) == expected


def test_no_command_at_all_is_an_error():
    with pytest.raises(api.RuntimeFailure, match="no command specified"):
        process_args([], [], {})


def test_env_image_first_then_container_overrides():
    env = merge_env(["PATH=/bin", "A=1", "B=2"], [("B", "3"), ("C", "4")], "pod")
    assert env == ["PATH=/bin", "HOSTNAME=pod", "A=1", "B=3", "C=4"]


def test_capabilities_add_drop_and_all():
    assert capabilities([], [], False) == DEFAULT_CAPABILITIES
    caps = capabilities(["NET_ADMIN"], ["NET_RAW", "CAP_KILL"], False)
    assert "CAP_NET_ADMIN" in caps and "CAP_NET_RAW" not in caps and "CAP_KILL" not in caps
    assert capabilities(["NET_BIND_SERVICE"], ["ALL"], False) == ["CAP_NET_BIND_SERVICE"]
    assert set(DEFAULT_CAPABILITIES) <= set(capabilities([], [], True))


@pytest.fixture
def rootfs(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nweb:x:33:33::/var/www:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\nweb:x:33:\nssl:x:101:web,other\n")
    return tmp_path


def test_user_resolution(rootfs):
    assert resolve_user(rootfs, "", None, None, "", []) == {"uid": 0, "gid": 0}
    # a name from the image, with its primary and member groups
    assert resolve_user(rootfs, "web", None, None, "", []) == {"uid": 33, "gid": 33, "additionalGids": [101]}
    # runAsUser wins over the image; the gid comes from passwd when runAsGroup is unset
    assert resolve_user(rootfs, "web", 33, None, "", [5]) == {"uid": 33, "gid": 33, "additionalGids": [5, 101]}
    assert resolve_user(rootfs, "1234:99", None, None, "", []) == {"uid": 1234, "gid": 99}
    assert resolve_user(rootfs, "", 1000, 2000, "", []) == {"uid": 1000, "gid": 2000}
    with pytest.raises(api.RuntimeFailure, match="unable to find user nosuch"):
        resolve_user(rootfs, "nosuch", None, None, "", [])


def test_container_spec_joins_the_sandbox(rootfs):
    ns = SandboxNamespaces(network="/run/netns/p", ipc="/proc/9/ns/ipc", uts="/proc/9/ns/uts",
                           shm="/sb/shm", hosts="/sb/hosts", resolv_conf="/sb/resolv.conf",
                           hostname_file="/sb/hostname", hostname="pod")
    cfg = api.ContainerConfig(
        name="c", image=None, command=["sleep", "1"], envs=[("A", "1")],
        mounts=[api.Mount("/data", str(rootfs), readonly=True), api.Mount("/etc/hosts", "/mine/hosts")],
        linux=api.LinuxContainerConfig(memory_limit_bytes=1 << 20, cpu_shares=256, cpu_quota=20000,
                                       pids_limit=10, readonly_rootfs=True, no_new_privs=True))
    spec = container_spec(cfg, {"Env": ["PATH=/bin"], "WorkingDir": "/w"}, rootfs, ns, "kubepods/podu/c",
                          False, "SIGQUIT")
    kinds = {n["type"]: n.get("path") for n in spec["linux"]["namespaces"]}
    assert kinds == {"mount": None, "pid": None, "network": "/run/netns/p", "ipc": "/proc/9/ns/ipc",
                     "uts": "/proc/9/ns/uts"}
    assert "hostname" not in spec  # the UTS namespace, and so the name, is the sandbox's
    mounts = {m["destination"]: m for m in spec["mounts"]}
    assert mounts["/dev/shm"]["source"] == "/sb/shm"
    assert mounts["/etc/hosts"]["source"] == "/mine/hosts"  # the container's own mount wins
    assert mounts["/etc/resolv.conf"]["source"] == "/sb/resolv.conf"
    assert "ro" in mounts["/data"]["options"] and "ro" in mounts["/sys/fs/cgroup"]["options"]
    assert spec["root"]["readonly"] is True and spec["process"]["noNewPrivileges"] is True
    assert spec["process"]["cwd"] == "/w"
    assert spec["linux"]["cgroupsPath"] == "kubepods/podu/c"  # relative: runc nests it under ours
    res = spec["linux"]["resources"]
    assert res["memory"] == {"limit": 1 << 20} and res["pids"] == {"limit": 10}
    assert res["cpu"] == {"shares": 256, "quota": 20000, "period": 100000}
    assert "/proc/kcore" in spec["linux"]["maskedPaths"]
    assert spec["annotations"]["org.opencontainers.image.stopSignal"] == "SIGQUIT"


def test_runtime_default_seccomp_follows_the_capabilities():
    plain = runtime_default(list(DEFAULT_CAPABILITIES))
    denied = set(plain["syscalls"][0]["names"])
    assert {"mount", "unshare", "ptrace", "reboot", "kexec_load", "bpf", "keyctl"} <= denied
    assert "read" not in denied and plain["defaultAction"] == "SCMP_ACT_ALLOW"
    assert any(r["names"] == ["clone"] and r["args"][0]["value"] == 0x10000000 for r in plain["syscalls"])
    admin = runtime_default([*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"])
    still = set(admin["syscalls"][0]["names"])
    assert not {"mount", "unshare", "bpf", "ptrace"} & still and {"reboot", "keyctl"} <= still
    assert not any("clone" in r["names"] or "clone3" in r["names"] for r in admin["syscalls"])
    assert seccomp_section("RuntimeDefault", "", [], privileged=True) is None
    assert seccomp_section("Unconfined", "", [], privileged=False) is None


def test_kubelet_cgroup_names():
    assert pod_cgroup("kubepods", "Guaranteed", "u1") == "kubepods/podu1"
    assert pod_cgroup("kubepods", "Burstable", "u1") == "kubepods/burstable/podu1"
    assert pod_cgroup("kubepods", "BestEffort", "u1") == "kubepods/besteffort/podu1"
    assert shares_to_weight(2) == 1 and shares_to_weight(1024) == 39 and shares_to_weight(262144) == 10000


def test_cgroup_detection_v1_and_v2(tmp_path):
    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "mountinfo").write_text(
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n")
    (v1 / "cgroup").write_text("4:memory:/agent\n2:cpu,cpuacct:/\n0::/\n")
    layout = CgroupLayout.detect(str(v1))
    assert layout.version == 1
    assert layout.spec_path("kubepods/podx") == "kubepods/podx"
    assert layout.dirs("kubepods/podx") == {
        "cpu": Path("/sys/fs/cgroup/cpu,cpuacct/kubepods/podx"),
        "cpuacct": Path("/sys/fs/cgroup/cpu,cpuacct/kubepods/podx"),
        "memory": Path("/sys/fs/cgroup/memory/agent/kubepods/podx")}
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "mountinfo").write_text("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
    (v2 / "cgroup").write_text("0::/system.slice/ketch.service\n")
    layout = CgroupLayout.detect(str(v2))
    assert layout.version == 2
    assert layout.dirs("kubepods") == {"": Path("/sys/fs/cgroup/system.slice/ketch.service/kubepods")}
    assert layout.spec_path("kubepods/podu/c") == "/system.slice/ketch.service/kubepods/podu/c"
    # an agent that an earlier one moved into its delegation leaf still puts pods beside it
    (v2 / "cgroup").write_text("0::/system.slice/ketch.service/ketch-agent\n")
    assert CgroupLayout.detect(str(v2)).spec_path("kubepods") == "/system.slice/ketch.service/kubepods"


def test_cni_chain_passes_prev_result_and_port_mappings(tmp_path):
    cni = CNI(CNIConfig(pod_cidr="10.1.2.0/24"), tmp_path, None)
    conf_list = cni.config.network_list(str(tmp_path))
    bridge, portmap = conf_list["plugins"]
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.1.2.0/24"}]]
    assert bridge["isGateway"] and bridge["isDefaultGateway"] and bridge["hairpinMode"]
    pm = port_mappings_for_cni([api.PortMapping(80, 8080), api.PortMapping(53, 0, "UDP")])
    assert pm == [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.5/24"}]}
    conf = cni._plugin_conf(conf_list, portmap, prev, pm)
    assert conf["name"] == "ketch" and conf["cniVersion"] == "1.0.0"
    assert conf["prevResult"] == prev and conf["runtimeConfig"] == {"portMappings": pm}
    assert "capabilities" not in conf
    assert result_ips({"ips": [{"address": "fd00::5/64"}, {"address": "10.1.2.5/24"}]}) == ["10.1.2.5", "fd00::5"]
