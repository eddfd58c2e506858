"""Layer tars ↔ overlay layer directories: OCI whiteouts become overlay whiteouts and back."""
import io
import os
import stat
import tarfile

import pytest

from ketch.images import layers
from ketch.images.errors import ImageError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts need mknod and trusted xattrs (root)")


def make_tar(path, entries):
    """entries: (name, kind, payload): kind file|dir|symlink|hardlink."""
    with tarfile.open(path, "w") as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, payload
                tar.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, payload
                tar.addfile(info)
            else:
                data = payload.encode()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))


def test_whiteouts_become_overlay_marks(tmp_path):
    blob = tmp_path / "layer.tar"
    make_tar(blob, [("etc/", "dir", None), ("etc/.wh.group", "file", ""), ("var/", "dir", None),
                    ("var/cache/", "dir", None), ("var/cache/.wh..wh..opq", "file", ""),
                    ("var/cache/new", "file", "n"), ("./bin/", "dir", None), ("bin/sh", "symlink", "busybox"),
                    ("bin/busybox", "file", "bb"), ("bin/ln", "hardlink", "bin/busybox")])
    dest = tmp_path / "layer"
    dest.mkdir()
    diff_id = layers.unpack(blob, dest)
    import hashlib
    assert diff_id == "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    st = os.lstat(dest / "etc/group")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(dest / "var/cache", layers.OPAQUE_XATTR) == b"y"
    assert not (dest / "var/cache" / layers.OPAQUE_MARKER).exists()
    assert os.readlink(dest / "bin/sh") == "busybox"
    assert os.stat(dest / "bin/ln").st_ino == os.stat(dest / "bin/busybox").st_ino

    # And back: the directory's tar carries OCI whiteouts again.
    out = io.BytesIO()
    digest, size = layers.write_diff(dest, out)
    names = tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames()
    assert "etc/.wh.group" in names and "var/cache/.wh..wh..opq" in names and "var/cache/new" in names
    assert size == len(out.getvalue()) and digest.startswith("sha256:")


def test_gzip_layer_has_the_diff_id_of_its_tar(tmp_path):
    import gzip
    plain = tmp_path / "l.tar"
    make_tar(plain, [("a", "file", "x")])
    gz = tmp_path / "l.tar.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    (tmp_path / "p").mkdir()
    (tmp_path / "g").mkdir()
    assert layers.unpack(gz, tmp_path / "g") == layers.unpack(plain, tmp_path / "p")
    assert (tmp_path / "g" / "a").read_text() == "x"


@pytest.mark.parametrize("entries", [
    [("../escape", "file", "x")],
    [("link", "symlink", "/etc"), ("link/passwd", "file", "x")],
    # a hard link through a planted symlink would link (and chown) a file outside the layer
    [("s", "symlink", "OUTSIDE"), ("x", "hardlink", "s/secret")],
    # whiteouts of "." and ".." would remove the layer directory or its parent
    [(".wh..", "file", "")],
    [(".wh...", "file", "")],
])
def test_unsafe_entries_refused(tmp_path, entries):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host file")
    entries = [(n, k, p.replace("OUTSIDE", str(outside)) if isinstance(p, str) else p) for n, k, p in entries]
    blob = tmp_path / "bad.tar"
    make_tar(blob, entries)
    dest = tmp_path / "layer"
    dest.mkdir()
    with pytest.raises(ImageError):
        layers.unpack(blob, dest)
    assert not (tmp_path / "escape").exists()
    assert dest.is_dir() and blob.exists()
    assert os.stat(outside / "secret").st_nlink == 1


def test_later_entry_replaces_symlink_without_following(tmp_path):
    outside = tmp_path / "outside"
    outside.write_text("keep")
    blob = tmp_path / "l.tar"
    make_tar(blob, [("f", "symlink", str(outside)), ("f", "file", "new")])
    dest = tmp_path / "layer"
    dest.mkdir()
    layers.unpack(blob, dest)
    assert outside.read_text() == "keep" and (dest / "f").read_text() == "new"
