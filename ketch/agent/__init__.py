"""The node agent: kubelet, container runtime, volumes, probes and streaming."""
