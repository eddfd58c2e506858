"""Pod volumes set up for real (as root, in tmp dirs): tmpfs mounts and their sizes, the
AtomicWriter layout and its updates seen through a bind mount, modes, hostPath types, subPath
checks, claims, fsGroup, and teardown by a manager that starts from the disk alone."""
from __future__ import annotations

import os
import socket
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from helpers.pod_source import DictSource, config_map, secret
from ketch.agent.env import ConfigError
from ketch.agent.volumes import VolumeError, VolumeManager
from ketch.agent.volumes.mounts import mounts_under, unmount

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts tmpfs: needs root")


@pytest.fixture
def root(tmp_path):
    """The agent's root dir; whatever a test leaves mounted below tmp_path is unmounted."""
    try:
        yield tmp_path / "kubelet"
    finally:
        for point, _ in mounts_under(tmp_path):
            unmount(point)


def make_pod(*volumes: dict, uid="pod-uid-1", containers=None, **spec) -> dict:
    return {"metadata": {"name": "vol-pod", "namespace": "default", "uid": uid,
                         "labels": {"app": "web", "tier": "front"}, "annotations": {"build": "42"}},
            "spec": {"volumes": list(volumes), "containers": containers or [{"name": "app", "image": "busybox"}],
                     **spec}}


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def fs_size(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


async def test_empty_dir_on_disk_and_in_memory(root):
    pod = make_pod({"name": "cache", "emptyDir": {}},
                   {"name": "memory-pd", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                   {"name": "ram", "emptyDir": {"medium": "Memory"}},
                   {"name": "big", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                   containers=[{"name": "app", "resources": {"limits": {"memory": "128Mi"}}}])
    vm = VolumeManager(root, DictSource())
    paths = await vm.setup(pod)
    assert paths["cache"] == root / "pods/pod-uid-1/volumes/kubernetes.io~empty-dir/cache"
    assert mode(paths["cache"]) == 0o777
    assert [m for m in mounts_under(root) if m[0] == paths["cache"]] == []
    assert (paths["memory-pd"], "tmpfs") in mounts_under(root)
    assert fs_size(paths["memory-pd"]) == 64 * 1024 * 1024
    assert fs_size(paths["ram"]) == 128 * 1024 * 1024  # no sizeLimit: the pod's memory limit
    assert fs_size(paths["big"]) == 128 * 1024 * 1024  # a sizeLimit above what the pod may use is capped
    assert stat.S_IMODE(os.stat(paths["memory-pd"]).st_mode) == 0o1777  # tmpfs root, as `ls -l /` shows
    assert await vm.setup(pod) == paths  # again: nothing mounted twice
    assert len([m for m in mounts_under(root) if m[0] == paths["memory-pd"]]) == 1
    await vm.teardown("pod-uid-1")
    assert mounts_under(root) == [] and not (root / "pods/pod-uid-1").exists()


async def test_config_map_layout_modes_and_items(root):
    src = DictSource([config_map("default", "app-config", **{"app.properties": "a=1\n", "log.level": "info"})])
    src.config_maps[("default", "app-config")]["binaryData"] = {"logo.bin": "AAEC"}
    pod = make_pod({"name": "cfg", "configMap": {"name": "app-config", "defaultMode": 0o640}},
                   {"name": "picked", "configMap": {"name": "app-config",
                                                    "items": [{"key": "log.level", "path": "conf/level", "mode": 0o400}]}})
    vm = VolumeManager(root, src)
    paths = await vm.setup(pod)
    cfg = paths["cfg"]
    assert cfg == root / "pods/pod-uid-1/volumes/kubernetes.io~configmap/cfg"
    data_link = os.readlink(cfg / "..data")
    assert data_link.startswith("..20") and (cfg / data_link).is_dir()
    assert sorted(os.listdir(cfg)) == sorted(["..data", data_link, "app.properties", "log.level", "logo.bin"])
    assert os.readlink(cfg / "app.properties") == "..data/app.properties"
    assert (cfg / "app.properties").read_text() == "a=1\n"
    assert (cfg / "logo.bin").read_bytes() == b"\x00\x01\x02"
    assert mode(cfg / "app.properties") == 0o640
    assert os.readlink(paths["picked"] / "conf") == "..data/conf"
    assert (paths["picked"] / "conf/level").read_text() == "info"
    assert mode(paths["picked"] / "conf/level") == 0o400


async def test_config_map_update_is_atomic_and_seen_through_a_bind_mount(root, tmp_path):
    src = DictSource([config_map("default", "cfg", version="one" * 1000, stale="x")])
    pod = make_pod({"name": "cfg", "configMap": {"name": "cfg"}})
    vm = VolumeManager(root, src)
    path = (await vm.setup(pod))["cfg"]
    old_ts = os.readlink(path / "..data")
    container_view = tmp_path / "container-mount"
    container_view.mkdir()
    subprocess.run(["mount", "--bind", str(path), str(container_view)], check=True)  # as runc mounts it
    seen, stop = set(), threading.Event()

    def reader():
        while not stop.is_set():
            try:
                seen.add((container_view / "version").read_text())
            except FileNotFoundError:
                seen.add("<missing>")

    thread = threading.Thread(target=reader)
    held = os.open(path, os.O_RDONLY | os.O_DIRECTORY)  # as a process whose cwd is the volume
    thread.start()
    try:
        assert await vm.refresh(pod) == set()  # unchanged content: nothing rewritten
        assert os.readlink(path / "..data") == old_ts
        for i in range(20):
            src.add(config_map("default", "cfg", version=f"v{i}" * 1000))
            assert await vm.refresh(pod) == {"cfg"}
        fd = os.open("version", os.O_RDONLY, dir_fd=held)
        with os.fdopen(fd) as f:
            assert f.read() == "v19" * 1000
    finally:
        stop.set()
        thread.join()
        os.close(held)
    assert (container_view / "version").read_text() == "v19" * 1000
    assert seen <= {"one" * 1000} | {f"v{i}" * 1000 for i in range(20)}  # never torn, never missing
    assert not (container_view / "stale").exists() and not os.path.lexists(path / "stale")
    assert not (path / old_ts).exists()
    versions = sorted(n for n in os.listdir(path) if n.startswith("..20"))
    current = os.readlink(path / "..data")
    assert len(versions) == 2 and current in versions  # the current version and the one it replaced
    previous = next(n for n in versions if n != current)
    assert (path / previous / "version").read_text() == "v18" * 1000


async def test_secret_is_on_tmpfs_and_decoded(root):
    src = DictSource([secret("default", "db", password=b"s3cr3t\x00", user="admin")])
    pod = make_pod({"name": "creds", "secret": {"secretName": "db", "defaultMode": 0o400,
                                                "items": [{"key": "password", "path": "pw"},
                                                          {"key": "user", "path": "user", "mode": 0o444}]}})
    vm = VolumeManager(root, src)
    path = (await vm.setup(pod))["creds"]
    assert path == root / "pods/pod-uid-1/volumes/kubernetes.io~secret/creds"
    assert (path, "tmpfs") in mounts_under(root)
    assert (path / "pw").read_bytes() == b"s3cr3t\x00"
    assert mode(path / "pw") == 0o400 and mode(path / "user") == 0o444


@pytest.mark.parametrize("volume,message", [
    ({"configMap": {"name": "absent"}}, 'configmap "absent" not found'),
    ({"secret": {"secretName": "absent"}}, 'secret "absent" not found'),
    ({"configMap": {"name": "cfg", "items": [{"key": "nope", "path": "x"}]}},
     "configmap references non-existent config key: nope"),
    ({"secret": {"secretName": "s", "items": [{"key": "nope", "path": "x"}]}},
     "references non-existent secret key: nope"),
])
async def test_missing_sources_fail_the_mount(root, volume, message):
    src = DictSource([config_map("default", "cfg", a="1"), secret("default", "s", b="2")])
    with pytest.raises(VolumeError) as err:
        await VolumeManager(root, src).setup(make_pod({"name": "v", **volume}))
    assert str(err.value) == f'MountVolume.SetUp failed for volume "v" : {message}'


async def test_optional_sources_project_what_exists(root):
    src = DictSource([config_map("default", "cfg", a="1")])
    pod = make_pod({"name": "v", "configMap": {"name": "absent", "optional": True}},
                   {"name": "w", "configMap": {"name": "cfg", "optional": True,
                                               "items": [{"key": "a", "path": "a"}, {"key": "b", "path": "b"}]}})
    paths = await VolumeManager(root, src).setup(pod)
    assert sorted(n for n in os.listdir(paths["v"]) if not n.startswith("..")) == []
    assert sorted(n for n in os.listdir(paths["w"]) if not n.startswith("..")) == ["a"]


async def test_downward_api_volume(root):
    pod = make_pod({"name": "podinfo", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "build", "fieldRef": {"fieldPath": "metadata.annotations['build']"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o600},
        {"path": "mem_limit", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory",
                                                   "divisor": "1Mi"}},
        {"path": "cpu_limit", "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu",
                                                   "divisor": "1m"}}]}},
        containers=[{"name": "app", "resources": {"limits": {"memory": "64Mi"}}}])
    vm = VolumeManager(root, DictSource(allocatable={"cpu": "2", "memory": "8Gi"}))
    path = (await vm.setup(pod))["podinfo"]
    assert path == root / "pods/pod-uid-1/volumes/kubernetes.io~downward-api/podinfo"
    assert (path / "labels").read_text() == 'app="web"\ntier="front"'
    assert (path / "build").read_text() == "42"
    assert (path / "name").read_text() == "vol-pod" and mode(path / "name") == 0o600
    assert (path / "mem_limit").read_text() == "64"
    assert (path / "cpu_limit").read_text() == "2000"  # no cpu limit: node allocatable
    pod["metadata"]["labels"]["tier"] = "back"
    assert await vm.refresh(pod) == {"podinfo"}
    assert (path / "labels").read_text() == 'app="web"\ntier="back"'


async def test_projected_volume_with_token(root):
    src = DictSource([config_map("default", "kube-root-ca.crt", **{"ca.crt": "CERT"}), secret("default", "s", k="v")],
                     tokens=True)
    volume = {"name": "kube-api-access-abcde", "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"secret": {"name": "s"}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                      "fieldPath": "metadata.namespace"}}]}}]}}
    pod = make_pod(volume, serviceAccountName="default")
    vm = VolumeManager(root, src)
    path = (await vm.setup(pod))["kube-api-access-abcde"]
    assert path == root / "pods/pod-uid-1/volumes/kubernetes.io~projected/kube-api-access-abcde"
    assert (path, "tmpfs") in mounts_under(root)
    assert (path / "token").read_text() == "token-1-for-default-default"
    assert (path / "ca.crt").read_text() == "CERT" and (path / "k").read_text() == "v"
    assert (path / "namespace").read_text() == "default"
    assert src.token_requests == [("default", "default", "", 3607)]
    await vm.refresh(pod)
    assert len(src.token_requests) == 1  # a fresh token is reused until 80% of its lifetime

    no_tokens = DictSource([config_map("default", "kube-root-ca.crt", **{"ca.crt": "CERT"}),
                            secret("default", "s", k="v")])
    path = (await VolumeManager(root, no_tokens).setup(make_pod(volume, uid="pod-uid-2")))["kube-api-access-abcde"]
    assert not os.path.lexists(path / "token") and (path / "ca.crt").read_text() == "CERT"


async def test_host_path_types(root, tmp_path):
    base = tmp_path / "host"
    base.mkdir()
    (base / "file").write_text("x")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(base / "sock"))
    vm = VolumeManager(root, DictSource())

    async def setup(path, kind):
        return (await vm.setup(make_pod({"name": "h", "hostPath": {"path": str(path), "type": kind}})))["h"]

    try:
        created = await setup(base / "new/dir", "DirectoryOrCreate")
        assert created == base / "new/dir" and created.is_dir() and mode(created) == 0o755
        assert (await setup(base / "newfile", "FileOrCreate")).is_file()
        assert mode(base / "newfile") == 0o644
        assert await setup(base / "file", "File") == base / "file"
        assert await setup(base / "sock", "Socket") == base / "sock"
        assert await setup("/dev/null", "CharDevice") == Path("/dev/null")
        assert await setup(base / "anything", "") == base / "anything"  # no type: no check
        failures = [
            (base / "missing", "Directory", f"hostPath type check failed: {base}/missing is not a directory"),
            (base / "file", "Directory", f"hostPath type check failed: {base}/file is not a directory"),
            (base / "file", "DirectoryOrCreate", f"hostPath type check failed: {base}/file is not a directory"),
            (base, "File", f"hostPath type check failed: {base} is not a file"),
            (base / "file", "Socket", f"hostPath type check failed: {base}/file is not a socket file"),
            (base / "file", "CharDevice", f"hostPath type check failed: {base}/file is not a character device"),
            ("/dev/null", "BlockDevice", "hostPath type check failed: /dev/null is not a block device"),
            (base / "no/parent", "FileOrCreate", f"open {base}/no/parent: no such file or directory"),
            (base, "Sideways", "Sideways is an invalid volume type"),
        ]
        for path, kind, message in failures:
            with pytest.raises(VolumeError) as err:
                await setup(path, kind)
            assert str(err.value) == f'MountVolume.SetUp failed for volume "h" : {message}', (path, kind)
    finally:
        sock.close()


async def test_mounts_sub_paths_and_read_only(root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    src = DictSource([config_map("default", "cfg", **{"nginx.conf": "server {}"})])
    container = {"name": "app", "volumeMounts": [
        {"name": "data", "mountPath": "/data"},
        {"name": "data", "mountPath": "/logs", "subPath": "logs/app", "readOnly": True},
        {"name": "data", "mountPath": "/per-pod", "subPathExpr": "pods/$(POD_NAME)"},
        {"name": "cfg", "mountPath": "/etc/nginx/nginx.conf", "subPath": "nginx.conf"},
        {"name": "cfg", "mountPath": "/cfg", "mountPropagation": "HostToContainer"},
    ]}
    pod = make_pod({"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}},
                   containers=[container])
    vm = VolumeManager(root, src)
    paths = await vm.setup(pod)
    mounts = vm.mounts(pod, container, paths, envs=[("POD_NAME", "web-0")])
    by_path = {m.container_path: m for m in mounts}
    assert by_path["/data"].host_path == str(paths["data"]) and not by_path["/data"].readonly
    logs = Path(by_path["/logs"].host_path)
    assert logs == paths["data"] / "logs/app" and logs.is_dir() and by_path["/logs"].readonly
    assert mode(logs) == 0o777  # created with the volume's mode
    assert by_path["/per-pod"].host_path == str(paths["data"] / "pods/web-0")
    conf = Path(by_path["/etc/nginx/nginx.conf"].host_path)
    assert conf.read_text() == "server {}" and ".." in conf.parent.name  # resolved through ..data
    assert by_path["/cfg"].readonly and by_path["/cfg"].propagation == "rslave"  # configMaps are read-only

    os.symlink(outside, paths["data"] / "escape")
    cases = [
        ({"subPath": "../../etc"}, "unable to provision SubPath `../../etc`: must not contain '..'"),
        ({"subPathExpr": "$(UP)/x"}, "unable to provision SubPath `../x`: must not contain '..'"),
        ({"subPath": "/etc"}, "error SubPath `/etc` must not be an absolute path"),
        ({"subPath": "escape"}, 'failed to prepare subPath for volumeMount "data" of container "app"'),
        ({"subPath": "escape/new"}, 'failed to create subPath directory for volumeMount "data" of container "app"'),
        ({"subPathExpr": "$(UNSET)"}, "missing value for UNSET"),
    ]
    for extra, message in cases:
        bad = {"name": "app", "volumeMounts": [{"name": "data", "mountPath": "/x", **extra}]}
        with pytest.raises(ConfigError) as err:
            vm.mounts(pod, bad, paths, envs=[("UP", "..")])
        assert str(err.value) == message
    assert list(outside.iterdir()) == []  # nothing was created outside the volume
    with pytest.raises(ConfigError, match='^cannot find volume "nope" to mount into container "app"$'):
        vm.mounts(pod, {"name": "app", "volumeMounts": [{"name": "nope", "mountPath": "/n"}]}, paths)


async def test_persistent_volume_claims(root, tmp_path):
    host_dir, local_dir = tmp_path / "pv-host", tmp_path / "pv-local"
    local_dir.mkdir()

    def claim(name, phase="Bound", volume=""):
        return {"kind": "PersistentVolumeClaim", "metadata": {"namespace": "default", "name": name, "uid": f"c-{name}"},
                "spec": {"volumeName": volume}, "status": {"phase": phase}}

    def pv(name, claim_uid, **source):
        return {"kind": "PersistentVolume", "metadata": {"name": name},
                "spec": {"claimRef": {"uid": claim_uid}, **source}}

    src = DictSource([claim("pending", "Pending"), claim("www-web-0", volume="pv-a"), claim("fast", volume="pv-b"),
                      claim("stolen", volume="pv-c"),
                      pv("pv-a", "c-www-web-0", hostPath={"path": str(host_dir), "type": "DirectoryOrCreate"}),
                      pv("pv-b", "c-fast", local={"path": str(local_dir)}), pv("pv-c", "someone-else",
                                                                               hostPath={"path": str(host_dir)})])
    vm = VolumeManager(root, src)

    def pod_with(claim_name, read_only=False):
        return make_pod({"name": "www", "persistentVolumeClaim": {"claimName": claim_name, "readOnly": read_only}})

    assert (await vm.setup(pod_with("www-web-0")))["www"] == host_dir and host_dir.is_dir()
    assert (await vm.setup(pod_with("fast")))["www"] == local_dir
    pod = pod_with("fast", read_only=True)
    container = {"name": "app", "volumeMounts": [{"name": "www", "mountPath": "/usr/share/nginx/html"}]}
    assert vm.mounts(pod, container, await vm.setup(pod))[0].readonly
    for name, message in [
        ("pending", "error processing PVC default/pending: PVC is not bound"),
        ("absent", 'error processing PVC default/absent: failed to fetch PVC from API server: '
                   'persistentvolumeclaims "absent" not found'),
        ("stolen", "error processing PVC default/stolen: found PV object pv-c but its pv.Spec.ClaimRef.UID "
                   "(someone-else) does not point to claim.UID (c-stolen)"),
    ]:
        with pytest.raises(VolumeError) as err:
            await vm.setup(pod_with(name))
        assert str(err.value) == message

    # A generic ephemeral volume uses the claim `<pod>-<volume>`, which the pod must control.
    owned = claim("vol-pod-scratch", volume="pv-d")
    owned["metadata"]["ownerReferences"] = [{"kind": "Pod", "name": "vol-pod", "uid": "pod-uid-1", "controller": True}]
    src.add(owned)
    src.add(pv("pv-d", "c-vol-pod-scratch", hostPath={"path": str(tmp_path / "eph"), "type": "DirectoryOrCreate"}))
    ephemeral = make_pod({"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}})
    assert (await vm.setup(ephemeral))["scratch"] == tmp_path / "eph"
    ephemeral["metadata"]["uid"] = "another-pod"
    with pytest.raises(VolumeError) as err:
        await vm.setup(ephemeral)
    assert str(err.value) == "PVC default/vol-pod-scratch was not created for pod default/vol-pod (pod is not owner)"


async def test_fs_group_ownership(root):
    src = DictSource([config_map("default", "cfg", key="v")])
    pod = make_pod({"name": "scratch", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o400}},
                   securityContext={"fsGroup": 2000})
    paths = await VolumeManager(root, src).setup(pod)
    st = os.stat(paths["scratch"])
    assert st.st_gid == 2000 and st.st_mode & stat.S_ISGID and stat.S_IMODE(st.st_mode) == 0o2777
    key = os.stat(paths["cfg"] / "key")
    assert key.st_gid == 2000 and stat.S_IMODE(key.st_mode) == 0o440  # group may read, as the kubelet sets it
    assert os.lstat(paths["cfg"] / "key").st_gid == 2000  # the symlink itself too


async def test_teardown_after_an_agent_restart(root):
    src = DictSource([secret("default", "db", pw="x")])
    pod = make_pod({"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                   {"name": "creds", "secret": {"secretName": "db"}}, {"name": "disk", "emptyDir": {}})
    paths = await VolumeManager(root, src).setup(pod)
    (paths["disk"] / "data").write_text("x")
    assert len(mounts_under(root)) == 2
    restarted = VolumeManager(root, DictSource())  # knows nothing but the directory tree
    assert restarted.pod_uids_on_disk() == ["pod-uid-1"]
    held = os.open(paths["mem"], os.O_RDONLY | os.O_DIRECTORY)  # a busy mount is detached, not left behind
    try:
        await restarted.teardown("pod-uid-1")
    finally:
        os.close(held)
    assert mounts_under(root) == [] and not (root / "pods/pod-uid-1").exists()
    await restarted.teardown("pod-uid-1")  # idempotent
    assert restarted.pod_uids_on_disk() == []


@pytest.mark.parametrize("path,message", [
    ("..hidden", "invalid path: must not start with '..': ..hidden"),
    ("a/../../b", "invalid path: must not contain '..': a/../../b"),
    ("/abs", "invalid path: must be relative path: /abs"),
    ("x" * 256, "invalid path: filenames must be less than or equal to 255 characters"),
])
async def test_item_paths_the_writer_refuses(root, path, message):
    src = DictSource([config_map("default", "cfg", a="1")])
    pod = make_pod({"name": "v", "configMap": {"name": "cfg", "items": [{"key": "a", "path": path}]}})
    with pytest.raises(VolumeError) as err:
        await VolumeManager(root, src).setup(pod)
    assert str(err.value) == f'MountVolume.SetUp failed for volume "v" : {message}'
