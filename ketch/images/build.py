"""`ketch image build`: a Containerfile subset built into the image store.

Each instruction that changes files runs on an overlay of the image so far with a fresh upper
directory; the upper directory then becomes the new layer as it is (overlay whiteouts and all) and
its tar (with OCI whiteouts) the layer blob. RUN executes in a container: runc with a spec of our
own, in a network namespace of its own that has only loopback.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any, TextIO

import orjson

from . import containerfile, layers, reference, rootpath
from .containerfile import Instruction
from .errors import BuildError
from .store import MEDIA_OCI_CONFIG, MEDIA_OCI_LAYER, MEDIA_OCI_MANIFEST, Image, ImageStore, canonical_json

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RUNC = "runc"
# Build mounts keep renamed directories and metadata-only copy-ups out of the upper directory, so
# it is a complete layer by itself.
BUILD_MOUNT_OPTIONS = "redirect_dir=off,metacopy=off,index=off"


@dataclass
class _State:
    diff_ids: list[str] = field(default_factory=list)
    layer_blobs: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    args: dict[str, str] = field(default_factory=dict)
    cmd_in_stage: bool = False

    def env(self) -> dict[str, str]:
        return dict(e.partition("=")[::2] for e in self.config.get("Env", []))


def build(store: ImageStore, context: Path | str, tags: list[str], containerfile_path: Path | str | None = None,
          build_args: dict[str, str] | None = None, out: TextIO | None = None,
          labels: dict[str, str] | None = None) -> Image:
    """Build the Containerfile (default CONTEXT/Containerfile, else CONTEXT/Dockerfile) and tag
    the result; progress goes to `out` as podman prints it. `labels` are added to the image's."""
    context = Path(context).resolve()
    if containerfile_path is None:
        containerfile_path = next((context / n for n in ("Containerfile", "Dockerfile")
                                   if (context / n).exists()), context / "Containerfile")
    try:
        text = Path(containerfile_path).read_text()
    except OSError as e:
        raise BuildError(f"reading {containerfile_path}: {e.strerror}") from None
    for tag in tags:
        reference.parse(tag)
    builder = _Builder(store, context, build_args or {}, out or sys.stdout)
    builder.extra_labels = labels or {}
    return builder.run(containerfile.parse(text), tags)


class _Builder:
    def __init__(self, store: ImageStore, context: Path, build_args: dict[str, str], out: TextIO):
        self.store, self.context, self.build_args, self.out = store, context, build_args, out
        self.state = _State()
        self.extra_labels: dict[str, str] = {}
        self.work = Path(tempfile.mkdtemp(dir=store.root / "tmp", prefix="build-"))

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def run(self, instructions: list[Instruction], tags: list[str]) -> Image:
        try:
            total = len(instructions)
            for number, ins in enumerate(instructions, 1):
                self.say(f"STEP {number}/{total}: {ins.original}")
                handler = getattr(self, f"_do_{ins.keyword.lower()}", None)
                if handler is None:
                    raise BuildError(f"{ins.keyword} is not supported by ketch image build")
                try:
                    handler(ins)
                except BuildError as e:
                    raise BuildError(f"building at STEP \"{ins.original}\": {e}") from None
            return self._commit(tags)
        finally:
            shutil.rmtree(self.work, ignore_errors=True)

    # ---- instructions that only change the config --------------------------------------------

    def _vars(self) -> dict[str, str]:
        return {**self.state.args, **self.state.env()}

    def _do_from(self, ins: Instruction) -> None:
        words = containerfile.expand(ins.args, self.state.args).split()
        if not words:
            raise BuildError("FROM needs an image")
        name = words[0]
        # ARGs declared before FROM serve FROM only; a stage declares its own again, as in docker.
        self.state = _State()
        if name == "scratch":
            self.state.config = {"Env": [f"PATH={DEFAULT_PATH}"]}
            return
        base = self.store.resolve(name)
        if base is None:
            raise BuildError(f"image {str(reference.parse(name))!r} not found in the local store "
                             "(load, pull or build it first)")
        self.state.diff_ids = list(base.diff_ids)
        manifest = self.store.read_blob(base.manifest_digest)
        self.state.layer_blobs = list(orjson.loads(manifest).get("layers", []))
        self.state.config = dict(base.config)
        self.state.history = list(base.spec.get("history", []))

    def _do_arg(self, ins: Instruction) -> None:
        for word in shlex.split(ins.args):
            key, sep, default = word.partition("=")
            value = self.build_args.get(key, containerfile.expand(default, self._vars()) if sep else "")
            self.state.args[key] = value
        self._note(ins, empty=True)

    def _do_env(self, ins: Instruction) -> None:
        env = self.state.env()
        for key, value in containerfile.key_values(ins.args, self._vars()):
            env[key] = value
        self.state.config["Env"] = [f"{k}={v}" for k, v in env.items()]
        self._note(ins, empty=True)

    def _do_label(self, ins: Instruction) -> None:
        labels = self.state.config.setdefault("Labels", {})
        labels.update(containerfile.key_values(ins.args, self._vars(), legacy=False))
        self._note(ins, empty=True)

    def _do_maintainer(self, ins: Instruction) -> None:
        self._note(ins, empty=True)

    def _do_expose(self, ins: Instruction) -> None:
        ports = self.state.config.setdefault("ExposedPorts", {})
        for word in containerfile.expand(ins.args, self._vars()).split():
            ports[word if "/" in word else f"{word}/tcp"] = {}
        self._note(ins, empty=True)

    def _do_volume(self, ins: Instruction) -> None:
        form = ins.exec_form() or containerfile.expand(ins.args, self._vars()).split()
        self.state.config.setdefault("Volumes", {}).update({v: {} for v in form})
        self._note(ins, empty=True)

    def _do_user(self, ins: Instruction) -> None:
        self.state.config["User"] = containerfile.expand(ins.args, self._vars()).strip()
        self._note(ins, empty=True)

    def _do_stopsignal(self, ins: Instruction) -> None:
        self.state.config["StopSignal"] = ins.args.strip()
        self._note(ins, empty=True)

    def _command(self, ins: Instruction) -> list[str]:
        return ins.exec_form() or ["/bin/sh", "-c", ins.args]

    def _do_cmd(self, ins: Instruction) -> None:
        self.state.config["Cmd"] = self._command(ins)
        self.state.cmd_in_stage = True
        self._note(ins, empty=True)

    def _do_entrypoint(self, ins: Instruction) -> None:
        self.state.config["Entrypoint"] = self._command(ins)
        # An ENTRYPOINT drops the CMD inherited from the base image (not one set in this stage),
        # as docker does.
        if not self.state.cmd_in_stage:
            self.state.config.pop("Cmd", None)
        self._note(ins, empty=True)

    def _do_workdir(self, ins: Instruction) -> None:
        path = containerfile.expand(ins.args.strip(), self._vars())
        path = os.path.normpath(os.path.join(self.state.config.get("WorkingDir") or "/", path))
        self.state.config["WorkingDir"] = path
        self._change(ins, lambda root: rootpath.resolve(root, path).mkdir(parents=True, exist_ok=True))

    # ---- instructions that change files -----------------------------------------------------

    def _do_copy(self, ins: Instruction) -> None:
        self._copy(ins, extract_archives=False)

    def _do_add(self, ins: Instruction) -> None:
        self._copy(ins, extract_archives=True)

    def _copy(self, ins: Instruction, extract_archives: bool) -> None:
        flags, words = containerfile.split_flags(ins.args)
        if "from" in flags:
            raise BuildError("COPY --from (multi-stage builds) is not supported")
        words = [containerfile.expand(w, self._vars()) for w in words]
        if len(words) < 2:
            raise BuildError(f"{ins.keyword} requires at least two arguments")
        *sources, dest = words
        paths = []
        for src in sources:
            if src.startswith(("http://", "https://")):
                raise BuildError("ADD from a URL is not supported (no network during builds)")
            matches = sorted(glob(str(self.context / src.lstrip("/")))) or []
            if not matches:
                raise BuildError(f"checking on sources under {str(self.context)!r}: {src}: no such file or directory")
            for m in matches:
                if not Path(m).resolve().is_relative_to(self.context):
                    raise BuildError(f"{src} is outside the build context")
                paths.append(Path(m))
        workdir = self.state.config.get("WorkingDir") or "/"
        dest_abs = os.path.join(workdir, dest)
        into_dir = dest.endswith("/") or len(paths) > 1

        def apply(root: Path) -> None:
            uid, gid = _chown(root, flags.get("chown"))
            for src in paths:
                if extract_archives and src.is_file() and tarfile.is_tarfile(src):
                    _extract_into(root, src, dest_abs, uid, gid, self.work)
                elif src.is_dir():
                    _copy_tree(root, src, dest_abs, uid, gid)
                else:
                    target = dest_abs
                    resolved = rootpath.resolve(root, dest_abs)
                    if into_dir or resolved.is_dir():
                        target = os.path.join(dest_abs, src.name)
                    _copy_entry(root, src, target, uid, gid)
        self._change(ins, apply)

    def _do_run(self, ins: Instruction) -> None:
        command = self._command(ins)
        self._change(ins, lambda root: self._run_container(root, command))

    def _run_container(self, rootfs: Path, command: list[str]) -> None:
        env = {"PATH": DEFAULT_PATH, **self.state.args, **self.state.env()}
        uid, gid = _lookup_user(rootfs, *(self.state.config.get("User") or "0").partition(":")[::2])
        cwd = self.state.config.get("WorkingDir") or "/"
        rootpath.resolve(rootfs, cwd).mkdir(parents=True, exist_ok=True)
        name = f"ketch-build-{uuid.uuid4().hex[:12]}"
        bundle = self.work / name
        bundle.mkdir()
        runc_root = self.work / "runc"
        netns = Path("/run/netns") / name
        _run(["ip", "netns", "add", name])
        try:
            _run(["ip", "-n", name, "link", "set", "lo", "up"])
            spec = run_spec(rootfs, command, [f"{k}={v}" for k, v in env.items()], cwd, uid, gid, netns, name)
            (bundle / "config.json").write_bytes(canonical_json(spec))
            proc = subprocess.Popen([RUNC, "--root", str(runc_root), "run", "--bundle", str(bundle), name],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                assert proc.stdout is not None
                for line in iter(proc.stdout.readline, b""):
                    self.out.write(line.decode(errors="replace"))
                self.out.flush()
                code = proc.wait()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                subprocess.run([RUNC, "--root", str(runc_root), "delete", "--force", name],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if code != 0:
                raise BuildError(f"while running runtime: exit status {code}")
        finally:
            subprocess.run(["ip", "netns", "delete", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # ---- layers -----------------------------------------------------------------------------

    def _change(self, ins: Instruction, action) -> None:
        """Run `action(root)` on the image so far mounted with a fresh upper directory; what it
        changed becomes the next layer."""
        step = Path(tempfile.mkdtemp(dir=self.work, prefix="step-"))
        upper = step / "upper"
        try:
            root = step / "rootfs"
            self.store.mount_layers([self.store.layer_dir(d) for d in self.state.diff_ids], root, step,
                                    BUILD_MOUNT_OPTIONS)
            try:
                action(root)
            finally:
                self.store.unmount_rootfs(root)
            if not any(upper.iterdir()):
                self._note(ins, empty=True)
                return
            blob = self.store.temp_path("layer-")
            with open(blob, "wb") as f:
                digest, size = layers.write_diff(upper, f)
            self.store.put_blob_file(blob, expected=digest, move=True)
            self.store.adopt_layer_dir(upper, digest)
            self.state.diff_ids.append(digest)
            self.state.layer_blobs.append({"mediaType": MEDIA_OCI_LAYER, "digest": digest, "size": size})
            self._note(ins, empty=False)
            self.say(f"--> {digest.removeprefix('sha256:')[:12]}")
        finally:
            shutil.rmtree(step, ignore_errors=True)

    def _note(self, ins: Instruction, empty: bool) -> None:
        entry: dict[str, Any] = {"created": _now(), "created_by": f"/bin/sh -c #(nop) {ins.original}"
                                 if empty else ins.original}
        if empty:
            entry["empty_layer"] = True
        self.state.history.append(entry)

    def _commit(self, tags: list[str]) -> Image:
        if self.extra_labels:
            self.state.config.setdefault("Labels", {}).update(self.extra_labels)
        spec = {"created": _now(), "architecture": "amd64", "os": "linux", "config": self.state.config,
                "rootfs": {"type": "layers", "diff_ids": self.state.diff_ids}, "history": self.state.history}
        config_bytes = canonical_json(spec)
        config_digest = self.store.put_blob_bytes(config_bytes)
        manifest = {"schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST,
                    "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
                    "layers": self.state.layer_blobs}
        self.say(f"COMMIT {' '.join(tags)}".rstrip())
        image = self.store.commit(canonical_json(manifest), names=tags)
        self.say(f"--> {image.short_id}")
        for tag in image.repo_tags:
            if tag in {str(reference.parse(t)) for t in tags}:
                self.say(f"Successfully tagged {tag}")
        self.say(image.id.removeprefix("sha256:"))
        return image


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"{' '.join(argv)}: {result.stderr.strip()}")


def _lookup_user(root: Path, user: str, group: str | None) -> tuple[int, int]:
    """uid and gid of USER `user[:group]` from the root's /etc/passwd and /etc/group."""
    def table(name: str) -> list[list[str]]:
        try:
            return [line.split(":") for line in rootpath.resolve(root, f"/etc/{name}").read_text().splitlines()]
        except OSError:
            return []
    uid, gid = None, None
    if user.isdigit():
        uid = int(user)
        gid = next((int(e[3]) for e in table("passwd") if len(e) > 3 and e[2] == user), 0)
    else:
        entry = next((e for e in table("passwd") if len(e) > 3 and e[0] == user), None)
        if entry is None:
            raise BuildError(f"unable to find user {user}: no matching entries in passwd file")
        uid, gid = int(entry[2]), int(entry[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            entry = next((e for e in table("group") if len(e) > 2 and e[0] == group), None)
            if entry is None:
                raise BuildError(f"unable to find group {group}: no matching entries in group file")
            gid = int(entry[2])
    return uid, gid


def _chown(root: Path, spec: str | None) -> tuple[int, int]:
    """COPY --chown=user[:group] (names looked up in the image), else root."""
    if not spec:
        return 0, 0
    user, _, group = spec.partition(":")
    return _lookup_user(root, user, group or None)


def _copy_entry(root: Path, src: Path, dest: str, uid: int, gid: int) -> None:
    """Copy one file, symlink or (empty) directory to `dest` inside the root, as COPY does:
    modes and times kept, owned by uid:gid."""
    parent = rootpath.resolve(root, os.path.dirname(dest) or "/")
    parent.mkdir(parents=True, exist_ok=True)
    target = parent / os.path.basename(dest.rstrip("/"))
    if src.is_symlink():
        if target.is_symlink() or target.exists():
            layers._remove(str(target))
        os.symlink(os.readlink(src), target)
    elif src.is_dir():
        target = rootpath.resolve(root, dest)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copystat(src, target)
    else:
        target = rootpath.resolve(root, dest)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        shutil.copy2(src, target)
    os.lchown(target, uid, gid)


def _copy_tree(root: Path, src: Path, dest: str, uid: int, gid: int) -> None:
    """A directory source copies its contents (not itself) into `dest`."""
    _copy_entry(root, src, dest, uid, gid)
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        for name in sorted(dirnames + filenames):
            _copy_entry(root, Path(dirpath) / name, os.path.normpath(os.path.join(dest, rel, name)), uid, gid)


def _extract_into(root: Path, archive: Path, dest: str, uid: int, gid: int, work: Path) -> None:
    """ADD of a local tar: its contents land in `dest` (owners from the archive, as docker does)."""
    tmp = Path(tempfile.mkdtemp(dir=work, prefix="add-"))
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(tmp, numeric_owner=True, filter="tar")
        target = rootpath.resolve(root, dest)
        target.mkdir(parents=True, exist_ok=True)
        for dirpath, dirnames, filenames in os.walk(tmp):
            rel = os.path.relpath(dirpath, tmp)
            for name in sorted(dirnames + filenames):
                path = Path(dirpath) / name
                st = os.lstat(path)
                _copy_entry(root, path, os.path.normpath(os.path.join(dest, rel, name)), st.st_uid, st.st_gid)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_spec(rootfs: Path, args: list[str], env: list[str], cwd: str, uid: int, gid: int, netns: Path,
             name: str) -> dict[str, Any]:
    """A minimal OCI runtime spec for one build step: the default capability set of a container,
    its own pid/mount/ipc/uts namespaces and the given network namespace."""
    caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
            "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
            "CAP_KILL", "CAP_AUDIT_WRITE"]
    return {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": uid, "gid": gid}, "args": args, "env": env, "cwd": cwd,
                    "capabilities": {k: caps for k in ("bounding", "effective", "permitted")}},
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": name[:63],
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                           {"type": "network", "path": str(netns)}],
            "cgroupsPath": name,
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                            "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }
