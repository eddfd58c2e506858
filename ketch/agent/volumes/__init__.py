"""Pod volumes as the kubelet prepares them; see manager.py."""
from ..runtime.api import Mount
from .manager import VolumeError, VolumeManager

__all__ = ["Mount", "VolumeError", "VolumeManager"]
