"""Container probes as the kubelet runs them: one run (`run_probe`) and the workers that repeat it
(`ProbeManager`). Network probes reach the pod through the runtime's open_connection."""
from .manager import (LIVENESS, READINESS, STARTUP, ProbeManager, kill_message, probe_grace_period)
from .probe import FAILURE, SUCCESS, UNKNOWN, WARNING, ProbeResult, run_probe

__all__ = ["ProbeManager", "ProbeResult", "run_probe", "kill_message", "probe_grace_period",
           "LIVENESS", "READINESS", "STARTUP", "SUCCESS", "WARNING", "FAILURE", "UNKNOWN"]
