"""Container runtime of the node agent.

api             the CRI-shaped interface the kubelet codes against (dataclasses, RuntimeService)
runc            RuncRuntime: that interface on runc and conmon, with state on disk for adoption
oci             OCI config.json for pause processes and containers (containerd's CRI defaults)
conmon          launching the per-container monitor (sync/start pipes), exit files, control fifo
cni             CNI 1.0.0 network list (bridge + host-local, portmap; loopback) run in the node's netns
cgroups         kubelet cgroup layout, v1 or v2, relative to the agent's own cgroup; usage readers
namespaces      network namespaces as bind-mounted files; running code inside one from a thread
streams         exec (pipes or a pty) and attach (conmon's SOCK_SEQPACKET socket) sessions
sandbox_files   /etc/hostname, hosts and resolv.conf shared by a pod's containers
stats           container and pod stats from cgroups, the writable layer and the pod's eth0
state           JSON records written atomically
"""
