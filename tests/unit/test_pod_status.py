"""The pod status the kubelet computes (ketch/agent/status.py) from runtime container states."""
from __future__ import annotations

from ketch.agent.runtime.api import CONTAINER_EXITED, CONTAINER_RUNNING, ContainerStatus
from ketch.agent.status import ContainerView, PodView, Waiting, phase, pod_status

NOW = "2026-12-02T00:00:00Z"
SEC = 1_000_000_000


def pod(containers=("app",), init=(), policy="Always", gates=(), status=None, sidecars=()) -> dict:
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": n, "image": "busybox"} for n in containers],
                     "initContainers": [{"name": n, "image": "busybox"} for n in init] +
                                       [{"name": n, "image": "busybox", "restartPolicy": "Always"} for n in sidecars],
                     "restartPolicy": policy, "readinessGates": [{"conditionType": g} for g in gates]},
            "status": status or {"conditions": [{"type": "PodScheduled", "status": "True"}]}}


def cs(name, state, attempt=0, code=0, cid="c1") -> ContainerStatus:
    return ContainerStatus(id=cid, sandbox_id="s", name=name, attempt=attempt, state=state, created_at=SEC,
                           started_at=2 * SEC, finished_at=3 * SEC if state == CONTAINER_EXITED else 0,
                           exit_code=code, reason=("Completed" if code == 0 else "Error")
                           if state == CONTAINER_EXITED else "")


def status_of(p: dict, views: list[ContainerView], init: list[ContainerView] = ()) -> dict:
    return pod_status(PodView(pod=p, host_ip="10.0.0.1", pod_ip="10.42.0.5", sandbox_ready=True,
                              containers=views, init=list(init)), NOW)


def conditions(status: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c.get("reason", "")) for c in status["conditions"]}


def test_running_and_ready():
    p = pod()
    st = status_of(p, [ContainerView(p["spec"]["containers"][0], cs("app", CONTAINER_RUNNING), ready=True)])
    assert st["phase"] == "Running" and st["podIP"] == "10.42.0.5" and st["qosClass"] == "BestEffort"
    assert [c["type"] for c in st["conditions"]] == ["PodReadyToStartContainers", "Initialized", "Ready",
                                                     "ContainersReady", "PodScheduled"]
    assert conditions(st)["Ready"] == ("True", "")
    assert st["containerStatuses"][0]["state"] == {"running": {"startedAt": "1970-01-01T00:00:02Z"}}
    assert st["containerStatuses"][0]["containerID"] == "ketch-runc://c1"


def test_waiting_behind_init_containers_is_pod_initializing():
    p = pod(init=("setup",))
    init = [ContainerView(p["spec"]["initContainers"][0], cs("setup", CONTAINER_RUNNING, cid="i1"), init=True)]
    st = status_of(p, [ContainerView(p["spec"]["containers"][0], behind_init=True)], init)
    assert st["phase"] == "Pending"
    assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert conditions(st)["Initialized"] == ("False", "ContainersNotInitialized")
    done = [ContainerView(p["spec"]["initContainers"][0], cs("setup", CONTAINER_EXITED, cid="i1"), init=True)]
    st = status_of(p, [ContainerView(p["spec"]["containers"][0], cs("app", CONTAINER_RUNNING), ready=True,
                                     behind_init=True)], done)
    assert st["phase"] == "Running" and st["initContainerStatuses"][0]["ready"] is True
    assert st["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


def test_crash_loop_keeps_last_state_and_phase_by_restart_policy():
    p = pod(policy="OnFailure")
    view = ContainerView(p["spec"]["containers"][0], cs("app", CONTAINER_EXITED, attempt=2, code=1),
                         waiting=Waiting("CrashLoopBackOff", "back-off 20s restarting failed container=app"))
    st = status_of(p, [view])
    c = st["containerStatuses"][0]
    assert c["state"]["waiting"]["reason"] == "CrashLoopBackOff" and c["restartCount"] == 2
    assert c["lastState"]["terminated"]["exitCode"] == 1
    assert st["phase"] == "Running"   # OnFailure will restart it
    assert phase(pod(policy="Never"), [], [{"state": {"terminated": {"exitCode": 1}}, "lastState": {}}]) == "Failed"
    assert phase(pod(policy="Never"), [], [{"state": {"terminated": {"exitCode": 0}}, "lastState": {}}]) == "Succeeded"


def test_readiness_gates_hold_ready_back():
    p = pod(gates=("example.com/feature",))
    views = [ContainerView(p["spec"]["containers"][0], cs("app", CONTAINER_RUNNING), ready=True)]
    st = status_of(p, views)
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ReadinessGatesNotReady")
    assert ready["message"] == 'corresponding condition of pod readiness gate "example.com/feature" does not exist.'
    assert conditions(st)["ContainersReady"] == ("True", "")
    p["status"]["conditions"].append({"type": "example.com/feature", "status": "True"})
    st = status_of(p, views)
    assert conditions(st)["Ready"] == ("True", "") and conditions(st)["example.com/feature"] == ("True", "")


def test_a_finished_container_the_runtime_forgot_keeps_its_end():
    reported = {"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}, "lastState": {},
                "ready": False, "restartCount": 0, "image": "busybox", "imageID": "", "started": False}
    p = pod(policy="Never", status={"phase": "Succeeded", "conditions": [],
                                    "containerStatuses": [reported]})
    st = status_of(p, [ContainerView(p["spec"]["containers"][0], reported=reported)])
    assert st["containerStatuses"][0] == reported and st["phase"] == "Succeeded"


def test_transition_times_stay_while_the_status_does():
    p = pod(status={"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
    views = [ContainerView(p["spec"]["containers"][0], cs("app", CONTAINER_RUNNING), ready=True)]
    ready = next(c for c in status_of(p, views)["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    views[0].ready = False
    ready = next(c for c in status_of(p, views)["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == NOW and ready["message"] == "containers with unready status: [app]"


def _sidecar_pod_status(policy="Always", side=None, app=None, side_ready=True, side_started=True):
    p = pod(sidecars=("side",), policy=policy)
    side_view = ContainerView(p["spec"]["initContainers"][0], side, ready=side_ready, started=side_started,
                              init=True, sidecar=True)
    app_view = ContainerView(p["spec"]["containers"][0], app, ready=True, behind_init=True)
    return status_of(p, [app_view], [side_view])


def test_a_sidecar_initializes_the_pod_once_started_and_counts_for_readiness():
    running = cs("side", CONTAINER_RUNNING, cid="s1")
    st = _sidecar_pod_status(side=running, side_started=False, side_ready=False)
    assert st["phase"] == "Pending"
    assert conditions(st)["Initialized"] == ("False", "ContainersNotInitialized")
    assert st["initContainerStatuses"][0]["started"] is False
    st = _sidecar_pod_status(side=running)
    assert conditions(st)["Initialized"] == ("True", "") and st["phase"] == "Pending"   # the app is still to start
    st = _sidecar_pod_status(side=running, side_ready=False, app=cs("app", CONTAINER_RUNNING))
    assert st["phase"] == "Running"
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["message"]) == ("False", "containers with unready status: [side]")
    st = _sidecar_pod_status(side=running, app=cs("app", CONTAINER_RUNNING))
    assert conditions(st)["Ready"] == ("True", "")
    assert st["initContainerStatuses"][0]["state"]["running"] and st["initContainerStatuses"][0]["ready"] is True


def test_a_pod_with_a_sidecar_is_done_when_its_app_containers_are():
    app_done = cs("app", CONTAINER_EXITED, code=0)
    # The sidecar still runs: the pod does too, until the kubelet stops it.
    assert _sidecar_pod_status("Never", cs("side", CONTAINER_RUNNING, cid="s1"), app_done)["phase"] == "Running"
    stopped = cs("side", CONTAINER_EXITED, code=143, cid="s1")
    st = _sidecar_pod_status("Never", stopped, app_done)
    assert st["phase"] == "Succeeded"
    assert st["initContainerStatuses"][0]["ready"] is False   # a stopped sidecar is not ready
    assert _sidecar_pod_status("Never", stopped, cs("app", CONTAINER_EXITED, code=2))["phase"] == "Failed"
    # A sidecar that crashed while the app runs is restarted, and does not end the pod.
    crashed = ContainerView(pod(sidecars=("side",))["spec"]["initContainers"][0], stopped, init=True, sidecar=True,
                            waiting=Waiting("CrashLoopBackOff"))
    p = pod(sidecars=("side",))
    st = status_of(p, [ContainerView(p["spec"]["containers"][0], cs("app", CONTAINER_RUNNING), ready=True,
                                     behind_init=True)], [crashed])
    assert st["phase"] == "Running" and conditions(st)["Initialized"] == ("True", "")
    assert conditions(st)["Ready"][0] == "False"
