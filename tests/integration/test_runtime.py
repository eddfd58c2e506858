"""The runc/conmon runtime with real runc, conmon and CNI plugins, each test on its own "node"
(a network namespace of its own standing in for the node's host namespace)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ketch.agent.runtime import api
from helpers.runtime_node import cni_plugin_dir, destroy_node, make_node

CRI_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d) (stdout|stderr) [FP] (.*)$")


@pytest.fixture
def node(tmp_path):
    n = make_node(tmp_path)
    try:
        yield n
    finally:
        destroy_node(n)


@pytest.fixture
def rt(node):
    return node.runtime()


def sandbox_config(name: str, **linux) -> api.PodSandboxConfig:
    return api.PodSandboxConfig(name=name, namespace="default", uid=f"uid-{name}", hostname=name,
                                labels={"app": name}, linux=api.LinuxPodSandboxConfig(**linux))


async def run_pod(rt, name: str, **linux) -> tuple[str, api.PodSandboxConfig]:
    cfg = sandbox_config(name, **linux)
    return await rt.run_pod_sandbox(cfg), cfg


async def run_container(rt, node, sid, scfg, name, command, start=True, **kw) -> str:
    linux = kw.pop("linux", None) or api.LinuxContainerConfig()
    cfg = api.ContainerConfig(name=name, image=node.image, command=command,
                              log_path=str(node.base / "logs" / f"{scfg.name}_{name}.log"),
                              labels={"container": name}, linux=linux, **kw)
    cid = await rt.create_container(sid, cfg, scfg)
    if start:
        await rt.start_container(cid)
    return cid


async def wait_exit(rt, cid, timeout=10.0) -> api.ContainerStatus:
    return await asyncio.wait_for(rt.wait_container(cid), timeout)


async def sh(rt, cid, script: str, timeout=10.0) -> tuple[int, str, str]:
    code, out, err = await rt.exec_sync(cid, ["sh", "-c", script], timeout)
    return code, out.decode(), err.decode()


HTTPD = ["httpd", "-f", "-h", "/www", "-p"]


async def test_sandbox_ip_shared_localhost_and_hostname(rt, node):
    sid, scfg = await run_pod(rt, "web")
    st = await rt.pod_sandbox_status(sid)
    assert st.state == api.SANDBOX_READY
    assert ipaddress.ip_address(st.ip) in ipaddress.ip_network(node.pod_cidr)
    server = await run_container(rt, node, sid, scfg, "server", HTTPD + ["127.0.0.1:8080"])
    client = await run_container(rt, node, sid, scfg, "client", ["sleep", "1000"])
    # the second container reaches the first on the pod's own localhost
    code, out, _ = await sh(rt, client, "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://127.0.0.1:8080/ && exit 0; sleep 0.1; done; exit 1")
    assert code == 0 and "hello from busybox" in out
    for cid in (server, client):
        _, out, _ = await sh(rt, cid, "hostname; cat /etc/hostname")
        assert out.split() == ["web", "web"]
    _, hosts, _ = await sh(rt, client, "cat /etc/hosts")
    assert f"{st.ip}\tweb" in hosts
    # the bridge lives in the node's namespace, with the pod's gateway address
    link = node.in_node("ip", "-4", "addr", "show", "cni0")
    assert "10.250.0.1/24" in link.stdout
    statuses = {c.name: c.state for c in await rt.list_containers(sandbox_id=sid)}
    assert statuses == {"server": "running", "client": "running"}
    await rt.stop_pod_sandbox(sid)
    assert (await rt.pod_sandbox_status(sid)).state == api.SANDBOX_NOTREADY
    assert {c.state for c in await rt.list_containers(sandbox_id=sid)} == {"exited"}
    await rt.remove_pod_sandbox(sid)
    assert await rt.list_pod_sandboxes() == []
    assert await rt.list_containers() == []
    # the pod's IP went back to host-local
    assert not any(p.name == st.ip for p in (node.root / "cni" / "networks").rglob("*"))


async def test_pod_to_pod_over_the_bridge_and_network_stats(rt, node):
    a, acfg = await run_pod(rt, "a")
    b, bcfg = await run_pod(rt, "b")
    await run_container(rt, node, a, acfg, "httpd", HTTPD + ["80"])
    client = await run_container(rt, node, b, bcfg, "client", ["sleep", "1000"])
    ip = (await rt.pod_sandbox_status(a)).ip
    code, out, _ = await sh(rt, client, f"for i in $(seq 20); do wget -qO- http://{ip}/ && exit 0; sleep 0.1; done; exit 1")
    assert code == 0 and out == "hello from busybox\n"
    stats = await rt.pod_sandbox_stats(a)
    assert stats.network_rx_bytes > 0 and stats.network_tx_bytes > 0
    assert [c.id for c in stats.containers] and stats.memory_working_set_bytes > 0


async def test_logs_exit_codes_and_reasons(rt, node):
    sid, scfg = await run_pod(rt, "job")
    failing = await run_container(rt, node, sid, scfg, "fail", ["sh", "-c", "echo out; echo err >&2; printf partial; exit 3"])
    ok = await run_container(rt, node, sid, scfg, "ok", ["true"])
    st = await wait_exit(rt, failing)
    assert (st.state, st.exit_code, st.reason) == ("exited", 3, "Error")
    assert st.finished_at >= st.started_at > st.created_at > 0
    st_ok = await wait_exit(rt, ok)
    assert (st_ok.exit_code, st_ok.reason) == (0, "Completed")
    lines = Path(st.log_path).read_text().splitlines()
    parsed = [CRI_LOG_LINE.match(ln) for ln in lines]
    assert all(parsed), lines
    entries = sorted((m.group(2), m.group(3)) for m in parsed)
    assert ("stdout", "out") in entries and ("stderr", "err") in entries
    assert any(m.group(2) == "stdout" and m.group(3) == "partial" for m in parsed)


async def test_oom_killed_under_memory_limit(rt, node):
    sid, scfg = await run_pod(rt, "hog", qos_class="Burstable")
    cid = await run_container(rt, node, sid, scfg, "hog", ["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"],
                              linux=api.LinuxContainerConfig(memory_limit_bytes=32 * 1024 * 1024))
    st = await wait_exit(rt, cid)
    assert (st.exit_code, st.reason) == (137, "OOMKilled")


async def test_stop_sigkill_fallback_and_graceful_stop(rt, node):
    sid, scfg = await run_pod(rt, "stop")
    stubborn = await run_container(rt, node, sid, scfg, "stubborn", ["sleep", "1000"])  # PID 1 ignores SIGTERM
    graceful = await run_container(rt, node, sid, scfg, "graceful",
                                   ["sh", "-c", "trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done"])
    custom = await run_container(rt, node, sid, scfg, "custom",
                                 ["sh", "-c", "trap 'exit 0' USR1; while :; do sleep 0.1; done"], stop_signal="SIGUSR1")
    await asyncio.sleep(0.3)  # let the traps be installed
    t = time.monotonic()
    await rt.stop_container(custom, 5)  # the image's (or config's) StopSignal, not SIGTERM
    assert time.monotonic() - t < 2 and (await rt.container_status(custom)).exit_code == 0
    t = time.monotonic()
    await rt.stop_container(graceful, 5)
    assert time.monotonic() - t < 2
    st = await rt.container_status(graceful)
    assert (st.state, st.exit_code, st.reason) == ("exited", 0, "Completed")
    t = time.monotonic()
    await rt.stop_container(stubborn, 1)
    took = time.monotonic() - t
    assert 0.9 < took < 3
    st = await rt.container_status(stubborn)
    assert (st.state, st.exit_code, st.reason) == ("exited", 137, "Error")
    await rt.stop_container(stubborn, 1)  # idempotent
    await rt.remove_container(stubborn)
    with pytest.raises(api.NotFound):
        await rt.container_status(stubborn)


async def test_exec_codes_stdin_and_tty(rt, node):
    sid, scfg = await run_pod(rt, "exec")
    cid = await run_container(rt, node, sid, scfg, "main", ["sleep", "1000"])
    assert await sh(rt, cid, "echo hi; echo oops >&2; exit 7") == (7, "hi\n", "oops\n")
    with pytest.raises(api.RuntimeFailure, match='OCI runtime exec failed: exec failed: .*"nosuch": executable file not found'):
        await rt.exec_sync(cid, ["nosuch"])
    with pytest.raises(asyncio.TimeoutError):
        await rt.exec_sync(cid, ["sleep", "30"], timeout=0.5)
    _, ps, _ = await sh(rt, cid, "ps -o comm")
    assert "sleep" in ps.split()[1:] and ps.split().count("sleep") == 1  # the timed-out one is gone
    # streaming exec with stdin
    s = await rt.exec(cid, ["sh", "-c", "read x; echo got:$x; exit 5"], stdin=True)
    s.stdin.write(b"value\n")
    await s.stdin.drain()
    assert await asyncio.wait_for(s.stdout.read(), 5) == b"got:value\n"
    assert await asyncio.wait_for(s.wait(), 5) == 5
    # with a TTY: a terminal of the size we set, and the exit code
    t = await rt.exec(cid, ["sh"], tty=True, stdin=True)
    assert t.stderr is None
    await t.resize(100, 40)
    await asyncio.sleep(0.2)
    t.stdin.write(b"[ -t 0 ] && echo IS-A-TTY; stty size; exit 4\n")
    out = await asyncio.wait_for(t.stdout.read(), 5)
    assert await asyncio.wait_for(t.wait(), 5) == 4
    assert b"IS-A-TTY" in out and b"40 100" in out


async def test_attach_to_stdin_and_stdout(rt, node):
    sid, scfg = await run_pod(rt, "attach")
    cid = await run_container(rt, node, sid, scfg, "echoer",
                              ["sh", "-c", "while read l; do echo got:$l; echo err:$l >&2; done; echo done"],
                              stdin=True)
    a = await rt.attach(cid, stdin=True)
    a.stdin.write(b"one\n")
    assert await asyncio.wait_for(a.stdout.readline(), 5) == b"got:one\n"
    assert await asyncio.wait_for(a.stderr.readline(), 5) == b"err:one\n"
    await a.close()  # detaching does not stop the container
    assert (await rt.container_status(cid)).state == "running"
    log = Path((await rt.container_status(cid)).log_path).read_text()
    assert "stdout F got:one" in log
    b = await rt.attach(cid, stdin=True)
    b.stdin.write(b"two\n")
    assert await asyncio.wait_for(b.stdout.readline(), 5) == b"got:two\n"
    await rt.stop_container(cid, 0)
    await asyncio.wait_for(b.wait(), 5)  # returns once the container has exited
    await b.close()


async def test_open_connection_inside_the_pod(rt, node):
    sid, scfg = await run_pod(rt, "pf")
    await run_container(rt, node, sid, scfg, "httpd", HTTPD + ["127.0.0.1:8080"])
    for _ in range(50):
        try:
            reader, writer = await rt.open_connection(sid, 8080)
            break
        except ConnectionRefusedError:
            await asyncio.sleep(0.05)
    else:
        pytest.fail("httpd never listened")
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n")[0]
    assert reply.endswith(b"hello from busybox\n")


async def test_limits_security_and_user(rt, node):
    sid, scfg = await run_pod(rt, "sec", qos_class="Burstable")
    limited = await run_container(
        rt, node, sid, scfg, "limited", ["sleep", "1000"],
        linux=api.LinuxContainerConfig(memory_limit_bytes=64 * 1024 * 1024, pids_limit=8, cpu_shares=512,
                                       cpu_quota=50_000, cpu_period=100_000))
    _, out, _ = await sh(rt, limited, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
                                       "/sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpu/cpu.cfs_quota_us"
                         if rt.cgroups.version == 1 else "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max")
    if rt.cgroups.version == 1:
        assert out.split() == [str(64 * 1024 * 1024), "8", "512", "50000"]
    # the pod's cgroup is where the kubelet would put a Burstable pod
    dirs = rt._container(limited)["cgroup_dirs"]
    assert "/kubepods/burstable/poduid-sec/" in next(iter(dirs.values()))
    # a BestEffort pod, with the kubelet's minimal cpu shares on it and its QoS parent
    be, becfg = await run_pod(rt, "be", qos_class="BestEffort")
    be_c = await run_container(rt, node, be, becfg, "c", ["sleep", "1000"])
    pod_dir = Path(rt._container(be_c)["cgroup_dirs"]["cpu" if rt.cgroups.version == 1 else ""]).parent
    assert pod_dir.name == "poduid-be" and pod_dir.parent.name == "besteffort"
    if rt.cgroups.version == 1:
        assert (pod_dir / "cpu.shares").read_text().strip() == "2"
        assert (pod_dir.parent / "cpu.shares").read_text().strip() == "2"
    # default capabilities (containerd's set), dropping ALL, a user from /etc/passwd and its groups
    _, caps, _ = await sh(rt, limited, "grep CapEff /proc/self/status")
    assert caps.split()[1] == "00000000a80425fb"
    # the pids limit stops forks (last use of this container: orphans may hold pids a while)
    code, _, err = await sh(rt, limited, "for i in $(seq 12); do sleep 1 & done; wait")
    assert code != 0 or "fork" in err.lower() or "resource" in err.lower()
    app = await run_container(
        rt, node, sid, scfg, "app", ["sleep", "1000"],
        linux=api.LinuxContainerConfig(run_as_username="app", capabilities_drop=["ALL"],
                                       readonly_rootfs=True, no_new_privs=True))
    _, ids, _ = await sh(rt, app, "id -u; id -g; id -G; grep -E 'CapBnd|NoNewPrivs' /proc/self/status")
    assert ids.split()[:5] == ["1000", "1000", "1000", "2000", "CapBnd:"]
    assert "0000000000000000" in ids and ids.split()[-1] == "1"
    code, _, _ = await sh(rt, app, "touch /newfile")
    assert code != 0
    code, _, _ = await sh(rt, app, "touch /tmp/x")  # /tmp is part of the (read-only) rootfs too
    assert code != 0


async def test_seccomp_profiles(rt, node, tmp_path):
    sid, scfg = await run_pod(rt, "seccomp")

    async def container(name: str, **linux) -> str:
        return await run_container(rt, node, sid, scfg, name, ["sleep", "1000"], linux=api.LinuxContainerConfig(**linux))

    async def mode(cid: str) -> str:
        return (await sh(rt, cid, "grep Seccomp: /proc/self/status"))[1].split()[1]

    free = await container("free")  # Unconfined, the kubelet's default
    assert await mode(free) == "0" and (await sh(rt, free, "unshare -U true"))[0] == 0
    confined = await container("confined", seccomp="RuntimeDefault")
    assert await mode(confined) == "2"  # a filter is installed
    code, _, err = await sh(rt, confined, "unshare -U true")  # a user namespace needs no capability, but is refused
    assert code != 0 and "Operation not permitted" in err
    assert (await sh(rt, confined, "echo ok > /tmp/f && cat /tmp/f"))[1] == "ok\n"  # the rest works
    admin = await container("admin", seccomp="RuntimeDefault", capabilities_add=["SYS_ADMIN"])
    assert (await sh(rt, admin, "unshare -U true"))[0] == 0  # allowed again with the capability
    privileged = await container("privileged", seccomp="RuntimeDefault", privileged=True)
    assert await mode(privileged) == "0"
    profile = tmp_path / "no-mkdir.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": '
                       '[{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}')
    local = await container("local", seccomp="Localhost", seccomp_localhost=str(profile))
    code, _, err = await sh(rt, local, "mkdir /tmp/d")
    assert code != 0 and "Permission denied" in err
    missing = tmp_path / "missing.json"
    with pytest.raises(api.RuntimeFailure) as failed:
        await container("missing", seccomp="Localhost", seccomp_localhost=str(missing))
    assert failed.value.message == (f'failed to generate seccomp spec opts: cannot load seccomp profile "{missing}": '
                                    f"open {missing}: no such file or directory")


async def test_host_network_pod_sees_the_node(rt, node):
    pod, pcfg = await run_pod(rt, "normal")  # creates the node's bridge
    hsid, hcfg = await run_pod(rt, "hostnet", host_network=True)
    cid = await run_container(rt, node, hsid, hcfg, "c", ["sleep", "1000"])
    _, links, _ = await sh(rt, cid, "ip link")
    assert "cni0" in links
    assert (await rt.pod_sandbox_status(hsid)).netns == node.netns
    # hostPID: the agent's processes are visible; without it only the container's own
    hp, hpcfg = await run_pod(rt, "hostpid", host_pid=True)
    seen = await run_container(rt, node, hp, hpcfg, "c", ["sleep", "1000"])
    me = os.getpid()
    assert (await sh(rt, seen, f"test -d /proc/{me}"))[0] == 0
    assert (await sh(rt, cid, f"test -d /proc/{me}"))[0] == 1  # its own pid namespace: a few pids only


async def test_shared_process_namespace(rt, node):
    sid, cfg = await run_pod(rt, "shared", share_pid=True)
    sleeper = await run_container(rt, node, sid, cfg, "sleeper", ["sleep", "1001"])
    looker = await run_container(rt, node, sid, cfg, "looker", ["sleep", "1002"])
    code, out, _ = await sh(rt, looker, "ps -o pid,args")
    assert code == 0 and "sleep 1001" in out and "sleep 1002" in out
    pid1 = next(line.split(None, 1)[1] for line in out.splitlines()[1:] if line.split()[0] == "1")
    assert pid1.startswith("/bin/sh -c trap")  # the pause process is PID 1
    # an orphan is reparented to the pause process, which reaps it: no zombie stays
    assert (await sh(rt, looker, "sh -c 'sleep 0.2 &' ; sleep 1; ps -o stat,args | grep -c '^Z' || true"))[1].strip() == "0"
    # a container's processes can be signalled from the other one
    assert (await sh(rt, looker, "kill $(ps -o pid,args | awk '/[s]leep 1001/{print $1}')"))[0] == 0
    assert (await wait_exit(rt, sleeper)).exit_code == 143  # SIGTERM: not PID 1 of its namespace, so it dies
    # a pod without the option keeps a pid namespace per container
    own, own_cfg = await run_pod(rt, "own")
    await run_container(rt, node, own, own_cfg, "a", ["sleep", "1003"])
    b = await run_container(rt, node, own, own_cfg, "b", ["sleep", "1004"])
    out = (await sh(rt, b, "ps -o pid,args"))[1]
    assert "sleep 1003" not in out and any(line.split()[:2] == ["1", "sleep"] for line in out.splitlines())


async def test_pod_namespaces_are_pinned_on_files_without_a_pause_process(rt, node):
    sysctls = {"kernel.shm_rmid_forced": "1", "net.ipv4.ip_unprivileged_port_start": "0"}
    sid, cfg = await run_pod(rt, "pinned", sysctls=sysctls)
    a = await run_container(rt, node, sid, cfg, "a", ["sleep", "1000"])
    b = await run_container(rt, node, sid, cfg, "b", ["sleep", "1000"])
    script = ("readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts; hostname; "
              "cat /proc/sys/kernel/shm_rmid_forced /proc/sys/net/ipv4/ip_unprivileged_port_start")
    seen = [(await sh(rt, cid, script))[1].split() for cid in (a, b)]
    assert seen[0] == seen[1]  # one IPC and one UTS namespace for the whole pod
    ipc, uts, hostname, rmid, port_start = seen[0]
    assert ipc != os.readlink("/proc/self/ns/ipc") and uts != os.readlink("/proc/self/ns/uts")
    assert (hostname, rmid, port_start) == ("pinned", "1", "0")
    assert Path("/proc/sys/kernel/shm_rmid_forced").read_text().strip() == "0"  # the node's is untouched
    # runc knows only the two containers: no process holds the pod's namespaces
    listed = subprocess.run(["runc", "--root", str(node.root / "runc"), "list", "-q"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert sorted(listed) == sorted([a, b])
    assert (await rt.pod_sandbox_status(sid)).state == api.SANDBOX_READY
    # a new agent on the same root adopts it as ready; stopping unmounts the pinned files
    rt2 = node.runtime()
    assert [(s.id, s.state) for s in await rt2.list_pod_sandboxes()] == [(sid, api.SANDBOX_READY)]
    await rt2.stop_pod_sandbox(sid)
    sandbox_dir = str(node.root / "sandboxes" / sid)
    assert not [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if sandbox_dir in line]
    assert (await rt2.pod_sandbox_status(sid)).state == api.SANDBOX_NOTREADY
    await rt2.remove_pod_sandbox(sid)
    # a sysctl of the node's own is refused, with runc's words, and leaves nothing behind
    with pytest.raises(api.RuntimeFailure) as refused:
        await run_pod(rt2, "greedy", sysctls={"vm.swappiness": "10"})
    assert 'sysctl "vm.swappiness" is not in a separate kernel namespace' in refused.value.message
    assert await rt2.list_pod_sandboxes() == []
    # hostIPC: the pod's containers share the node's IPC namespace, and an IPC sysctl is refused
    hsid, hcfg = await run_pod(rt2, "hostipc", host_ipc=True)
    h = await run_container(rt2, node, hsid, hcfg, "h", ["sleep", "1000"])
    assert (await sh(rt2, h, "readlink /proc/self/ns/ipc"))[1].strip() == os.readlink("/proc/self/ns/ipc")
    with pytest.raises(api.RuntimeFailure) as refused:
        await run_pod(rt2, "hostipc2", host_ipc=True, sysctls={"kernel.shm_rmid_forced": "1"})
    assert 'is not allowed in the hosts ipc namespace' in refused.value.message


async def test_failed_cni_del_is_retried_and_the_ip_not_leaked(node, tmp_path):
    plugins = cni_plugin_dir(tmp_path / "cni-bin")  # the node's CNI plugin directory, which an upgrade will empty
    rt = node.runtime(plugin_dirs=[str(plugins)])
    sid, _cfg = await run_pod(rt, "del")
    ip = (await rt.pod_sandbox_status(sid)).ip
    lease = node.root / "cni" / "networks" / "ketch" / ip  # host-local's record of the pod's address
    assert lease.exists()
    (plugins / "bridge").unlink()
    with pytest.raises(api.RuntimeFailure) as failed:
        await rt.stop_pod_sandbox(sid)
    assert failed.value.message == (f'failed to destroy network for sandbox "{sid}": '
                                    f'failed to find plugin "bridge" in path [{plugins}]')
    with pytest.raises(api.RuntimeFailure):
        await rt.remove_pod_sandbox(sid)
    assert [(s.id, s.state) for s in await rt.list_pod_sandboxes()] == [(sid, api.SANDBOX_NOTREADY)]
    assert lease.exists()  # not released, not forgotten
    (plugins / "bridge").symlink_to("/usr/lib/cni/bridge")
    await rt.remove_pod_sandbox(sid)  # DEL again, which now succeeds
    assert not lease.exists() and await rt.list_pod_sandboxes() == []
    assert not (node.root / "sandboxes" / sid).exists()
    assert node.in_node("ip", "-o", "link", "show", "type", "veth").stdout == ""  # its veth went too


async def test_adoption_after_the_agent_is_killed(node):
    rt1 = node.runtime()
    sid, scfg = await run_pod(rt1, "survivor")
    long = await run_container(rt1, node, sid, scfg, "long", ["sleep", "1000"])
    short = await run_container(rt1, node, sid, scfg, "short", ["sh", "-c", "sleep 1; exit 4"])
    pid = (await rt1.container_status(long)).pid
    del rt1  # the agent "dies": nothing is stopped, no method is called
    await asyncio.sleep(1.5)  # "short" exits while no agent is running
    rt2 = node.runtime()
    sandboxes = await rt2.list_pod_sandboxes()
    assert [(s.id, s.state) for s in sandboxes] == [(sid, "ready")]
    by_name = {c.name: c for c in await rt2.list_containers()}
    assert by_name["long"].id == long and by_name["long"].state == "running" and by_name["long"].pid == pid
    assert (by_name["short"].id, by_name["short"].state, by_name["short"].exit_code) == (short, "exited", 4)
    assert await sh(rt2, long, "echo still here") == (0, "still here\n", "")
    await rt2.stop_container(long, 0)
    assert (await rt2.container_status(long)).exit_code == 137
    # the restarted agent removes the pod before it knows the podCIDR again: the network
    # config of the pod's ADD is what its DEL uses, so the IP is released all the same
    ip = (await rt2.pod_sandbox_status(sid)).ip
    await rt2.update_runtime_config("")
    await rt2.remove_pod_sandbox(sid)
    assert await rt2.list_pod_sandboxes() == []
    assert not any(p.name == ip for p in (node.root / "cni" / "networks").rglob("*"))
    assert "veth" not in node.in_node("ip", "link").stdout


async def test_stats_after_burning_cpu(rt, node):
    sid, scfg = await run_pod(rt, "burn")
    cid = await run_container(rt, node, sid, scfg, "burn", ["sh", "-c", "while :; do :; done"])
    await asyncio.sleep(0.5)
    s1 = await rt.container_stats(cid)
    await asyncio.sleep(0.3)
    s2 = await rt.container_stats(cid)
    assert s1.cpu_usage_core_nanoseconds > 100_000_000
    assert s2.cpu_usage_core_nanoseconds > s1.cpu_usage_core_nanoseconds and s2.timestamp > s1.timestamp
    assert s2.memory_working_set_bytes > 0 and s2.memory_usage_bytes >= s2.memory_working_set_bytes
    pod = await rt.pod_sandbox_stats(sid)
    assert pod.cpu_usage_core_nanoseconds >= s2.cpu_usage_core_nanoseconds
    assert [c.id for c in await rt.list_container_stats()] == [cid]


async def test_host_port_through_portmap(rt, node):
    cfg = sandbox_config("hp")
    cfg.port_mappings = [api.PortMapping(container_port=80, host_port=18080)]
    sid = await rt.run_pod_sandbox(cfg)
    await run_container(rt, node, sid, cfg, "httpd", HTTPD + ["80"])
    other, ocfg = await run_pod(rt, "client")
    client = await run_container(rt, node, other, ocfg, "client", ["sleep", "1000"])
    # another pod reaches the pod through the node's address (the bridge's) and the host port
    code, out, _ = await sh(rt, client, "for i in $(seq 20); do wget -qO- http://10.250.0.1:18080/ && exit 0; sleep 0.1; done; exit 1")
    assert code == 0 and out == "hello from busybox\n"
    rules = node.in_node("iptables-save", "-t", "nat").stdout
    assert "18080" in rules
    await rt.remove_pod_sandbox(sid)
    assert "18080" not in node.in_node("iptables-save", "-t", "nat").stdout


async def test_privileged_and_tty_container(rt, node):
    sid, scfg = await run_pod(rt, "priv")
    cid = await run_container(rt, node, sid, scfg, "priv", ["sh", "-c", "stty size; grep CapEff /proc/self/status; sleep 1000"],
                              tty=True, linux=api.LinuxContainerConfig(privileged=True))
    # all the capabilities the agent itself holds
    _, out, _ = await sh(rt, cid, "grep CapEff /proc/self/status")
    own = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("CapBnd:"))
    assert out.split()[1] == own.split()[1]
    a = await rt.attach(cid, stdin=False, tty=True)
    assert a.stderr is None
    await a.close()
    st = await rt.container_status(cid)
    assert st.state == "running"
    log = Path(st.log_path).read_text()
    assert "stdout" in log  # a TTY's output is logged as stdout


async def test_dns_sysctls_and_log_reopen(rt, node):
    cfg = sandbox_config("dns", sysctls={"net.ipv4.ip_unprivileged_port_start": "0"})
    cfg.dns = api.DNSConfig(servers=["10.96.0.10"], searches=["default.svc.cluster.local", "svc.cluster.local"],
                            options=["ndots:5"])
    sid = await rt.run_pod_sandbox(cfg)
    cid = await run_container(rt, node, sid, cfg, "ticker",
                              ["sh", "-c", "i=0; while :; do echo line$i; i=$((i+1)); sleep 0.05; done"])
    _, out, _ = await sh(rt, cid, "cat /etc/resolv.conf; cat /proc/sys/net/ipv4/ip_unprivileged_port_start")
    assert out.splitlines() == ["search default.svc.cluster.local svc.cluster.local", "nameserver 10.96.0.10",
                                "options ndots:5", "0"]
    # rotation as the kubelet does it: rename, then ask the monitor to reopen
    log = Path((await rt.container_status(cid)).log_path)
    await asyncio.sleep(0.3)
    log.rename(log.with_name(log.name + ".1"))
    await rt.reopen_container_log(cid)
    await asyncio.sleep(0.3)
    assert log.exists() and "stdout F line" in log.read_text()
    old = log.with_name(log.name + ".1").read_text().splitlines()
    new = log.read_text().splitlines()
    assert int(new[0].rsplit("line", 1)[1]) == int(old[-1].rsplit("line", 1)[1]) + 1  # nothing lost


async def test_missing_command_is_a_start_error(rt, node):
    sid, scfg = await run_pod(rt, "missing")
    cid = await run_container(rt, node, sid, scfg, "c", ["/nosuch"], start=False)
    assert (await rt.container_status(cid)).state == "created"
    with pytest.raises(api.RuntimeFailure, match=r'OCI runtime create failed: .*exec: "/nosuch": .*no such file or directory: unknown'):
        await rt.start_container(cid)
    st = await rt.container_status(cid)
    assert (st.state, st.exit_code, st.reason) == ("exited", 128, "StartError")
    assert "OCI runtime create failed" in st.message
    await rt.remove_container(cid)
    assert await rt.list_containers() == []


async def test_attach_stdin_once_closes_the_container_stdin(rt, node):
    sid, scfg = await run_pod(rt, "once")
    cid = await run_container(rt, node, sid, scfg, "cat", ["sh", "-c", "cat; echo eof-seen; exit 9"],
                              stdin=True, stdin_once=True)
    a = await rt.attach(cid, stdin=True)
    a.stdin.write(b"payload\n")
    assert await asyncio.wait_for(a.stdout.readline(), 5) == b"payload\n"
    await a.close_stdin()  # the client's end of stdin: with stdinOnce the container's stdin closes
    assert await asyncio.wait_for(a.stdout.readline(), 5) == b"eof-seen\n"
    st = await wait_exit(rt, cid)
    assert st.exit_code == 9
    await a.close()


AGENT_SCRIPT = r"""
import asyncio, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from pathlib import Path
from ketch.agent.runtime import api
from ketch.agent.runtime.cni import CNIConfig
from ketch.agent.runtime.runc import RuncRuntime
from ketch.images.store import ImageStore
from helpers.rootfs import busybox_image

async def main(base, netns, cgroup_top, count):
    rt = RuncRuntime(base / "runtime", ImageStore(base / "images"), CNIConfig(pod_cidr="10.250.0.0/24"),
                     host_netns=netns, cgroup_root=f"{cgroup_top}/kubepods")
    image = busybox_image(base / "busybox")
    for i in range(count):
        cfg = api.PodSandboxConfig(name=f"p{i}", namespace="default", uid=f"u{i}", labels={"n": str(i)})
        sid = await rt.run_pod_sandbox(cfg)
        c = api.ContainerConfig(name="c", image=image, command=["sh", "-c", "while :; do echo tick; sleep 0.2; done"],
                                log_path=str(base / "logs" / f"p{i}.log"))
        await rt.start_container(await rt.create_container(sid, c, cfg))
    print("ready", flush=True)
    await asyncio.sleep(3600)  # killed -9 here

asyncio.run(main(Path(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6])))
"""


async def test_real_kill_9_of_the_agent_process(node):
    root = Path(__file__).resolve().parents[2]
    agent = subprocess.Popen([sys.executable, "-c", AGENT_SCRIPT, str(root), str(root / "tests"), str(node.base),
                              node.netns, node.cgroup_top, "8"], stdout=subprocess.PIPE, text=True)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(agent.stdout.readline), 60)
        assert line.strip() == "ready"
    finally:
        agent.kill()  # SIGKILL: no cleanup of any kind
        agent.wait()
    rt = node.runtime()
    sandboxes = await rt.list_pod_sandboxes()
    assert len(sandboxes) == 8 and {s.state for s in sandboxes} == {"ready"}
    assert len({s.ip for s in sandboxes}) == 8
    containers = await rt.list_containers()
    assert len(containers) == 8 and {c.state for c in containers} == {"running"}
    # the monitors kept the logs going while no agent ran
    log = Path(containers[0].log_path)
    before = log.read_text().count("tick")
    await asyncio.sleep(0.5)
    assert log.read_text().count("tick") > before
    for s in sandboxes:
        await rt.remove_pod_sandbox(s.id)
    assert await rt.list_containers() == [] and await rt.list_pod_sandboxes() == []


async def test_tty_exec_takes_more_input_than_a_pty_buffers(rt, node):
    sid, scfg = await run_pod(rt, "bigtty")
    cid = await run_container(rt, node, sid, scfg, "main", ["sleep", "1000"])
    t = await rt.exec(cid, ["sh", "-c", "stty -echo; wc -c"], tty=True, stdin=True)
    await asyncio.sleep(0.2)
    lines = b"".join(b"%07d\n" % i for i in range(25_000))  # 200 kB, far more than the pty holds
    t.stdin.write(lines)
    t.stdin.close()  # ^D after the data: end of input for wc
    out = await asyncio.wait_for(t.stdout.read(), 20)
    assert await asyncio.wait_for(t.wait(), 5) == 0
    assert str(len(lines)).encode() in out


async def test_images_in_use_count_the_other_local_nodes_containers(rt, node, tmp_path):
    """Image GC of one node keeps the images another node of the machine (another runtime root,
    the same store) has containers of, running or not."""
    from ketch.agent.kubelet import images_in_use
    from ketch.agent.runtime.runc import RuncRuntime
    sid, scfg = await run_pod(rt, "gc")
    cid = await run_container(rt, node, sid, scfg, "c", ["true"], start=False)
    image_id = next(c.image_id for c in await rt.list_containers() if c.id == cid)
    lonely = RuncRuntime(tmp_path / "other-node", node.store)
    try:
        assert image_id not in await images_in_use(lonely, [], node.store)
        assert image_id in await images_in_use(lonely, [node.root], node.store)
    finally:
        await lonely.close()
