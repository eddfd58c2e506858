"""Image errors. Pull failures carry containerd's wording, which the kubelet puts in its
ErrImagePull events (`failed to pull and unpack image "docker.io/library/x:1": ...`)."""
from __future__ import annotations


class ImageError(Exception):
    """Any failure of the image store, its sources or the builder; the message is for users."""


class ImageNotFound(ImageError):
    pass


class ImageInUse(ImageError):
    pass


class ContentRemoved(ImageError):
    """A concurrent removal swept content an image being added needs; adding again fixes it."""


class ImagePullError(ImageError):
    """`code` is the gRPC status a CRI runtime gives the kubelet ("NotFound", "Unknown", ...), so
    the kubelet can say `rpc error: code = NotFound desc = <message>` as upstream events do."""

    unreachable = False   # True when no registry answered at all

    def __init__(self, message: str, code: str = "Unknown"):
        super().__init__(message)
        self.code = code


class BuildError(ImageError):
    pass
