"""A busybox image made from the machine's static busybox, for tests that run containers.

It is an ketch.images.store.Image whose one layer is a directory outside any store, so an
ImageStore can mount it as a container's rootfs without a pull or an archive.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ketch.images.store import Image

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "ls", "cat", "echo", "sleep", "true", "false", "id", "hostname", "wget", "httpd",
           "nc", "dd", "head", "tail", "ps", "kill", "grep", "env", "pwd", "mkdir", "touch", "ip",
           "ifconfig", "stty", "yes", "seq", "wc", "mount", "df", "ipcs", "sync", "stat", "printf")

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n" \
         "app:x:1000:1000:app:/home/app:/bin/sh\n"
GROUP = "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nextra:x:2000:app\n"


def make_busybox_layer(directory: Path) -> Path:
    """A directory holding a minimal busybox root filesystem."""
    (directory / "bin").mkdir(parents=True, exist_ok=True)
    for d in ("etc", "proc", "sys", "dev", "tmp", "root", "home/app", "www"):
        (directory / d).mkdir(parents=True, exist_ok=True)
    os.chmod(directory / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, directory / "bin" / "busybox")
    for applet in APPLETS:
        link = directory / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    (directory / "etc" / "passwd").write_text(PASSWD)
    (directory / "etc" / "group").write_text(GROUP)
    (directory / "www" / "index.html").write_text("hello from busybox\n")
    return directory


def busybox_image(directory: Path, **config) -> Image:
    """An Image of busybox; config entries (Cmd, Env, User, ...) go into its OCI config."""
    layer = make_busybox_layer(directory)
    cfg = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]}
    cfg.update(config)
    return Image(id="sha256:" + "b" * 64, repo_tags=["docker.io/library/busybox:latest"],
                 repo_digests=[], config=cfg, layer_dirs=[layer], size=0)
