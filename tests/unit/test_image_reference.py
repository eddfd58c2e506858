"""Image references normalise as containerd and the kubelet do (docker/distribution's rules)."""
import pytest

from ketch.images import reference
from ketch.images.reference import InvalidReference, parse

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("text, expected", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("jonbaier/pod-scaling:0.2", "docker.io/jonbaier/pod-scaling:0.2"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox:latest"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/app", "localhost:5000/app:latest"),
    ("127.0.0.1:5000/team/app:v1", "127.0.0.1:5000/team/app:v1"),
    ("gcr.io/google_containers/pause:3.1", "gcr.io/google_containers/pause:3.1"),
    (f"busybox@{D}", f"docker.io/library/busybox@{D}"),
    (f"busybox:1@{D}", f"docker.io/library/busybox:1@{D}"),
    ("[::1]:5000/app", "[::1]:5000/app:latest"),
])
def test_normalises(text, expected):
    assert str(parse(text)) == expected


def test_parts_and_familiar_name():
    ref = parse("127.0.0.1:5000/team/app:v1")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("127.0.0.1:5000", "team/app", "v1", None)
    assert parse("busybox").familiar_name == "busybox"
    assert parse("jonbaier/node-express-info").familiar_name == "jonbaier/node-express-info"
    assert parse("busybox", default_tag=False).tag is None
    assert reference.registry_host("docker.io") == "registry-1.docker.io"


@pytest.mark.parametrize("text", ["", " busybox", "Busybox", "busybox:", "busybox:-x", "a//b", "busybox@sha256:xyz",
                                  "-busybox", "a" * 256])
def test_invalid(text):
    with pytest.raises(InvalidReference, match="invalid reference format"):
        parse(text)


def test_ids():
    assert reference.is_image_id("a" * 64) and reference.is_image_id("sha256:" + "a" * 64)
    assert not reference.is_image_id("busybox")
