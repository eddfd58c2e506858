"""Simulated nodes, as kwok makes them: `ketch simulate --nodes N --kubeconfig F`.

A simulated node is a Node object, a Lease renewed in kube-node-lease and a status-patching loop
that plays the kubelet for the pods bound to it. No container runs; the pods' status is what a
kubelet would report. Pods steer the simulation with annotations (all optional):

  ketch.io/simulate-start-delay: "500ms"  time from binding to Running (default: --start-delay)
  ketch.io/simulate-ready-after: "5s"     containers are running but not ready for this long
  ketch.io/simulate-duration: "2s"        the containers exit this long after they started
  ketch.io/simulate-exit-code: "1"        their exit code (default 0); 0 is Completed, else Error
  ketch.io/simulate-cpu: "200m"           simulated usage while running (with --metrics), split
  ketch.io/simulate-memory: "64Mi"        evenly over the containers; see usage.py

An exited container is restarted as its pod's restartPolicy says (Always; OnFailure when the exit
code is not 0): restartCount goes up and it runs for the duration again. Otherwise the pod ends
Succeeded (all exit codes 0) or Failed.
"""
