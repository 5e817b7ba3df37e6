"""The pod index the reconciler reads instead of listing pods (podcache.py): newer views win,
a deletion removes only the incarnation it names, and what is kept is what the operator reads."""

from __future__ import annotations

from typing import Any

from tether_operator.manifests import LABEL_TASK
from tether_operator.podcache import PodCache, trim

Body = dict[str, Any]


def pod(name: str, rv: str, uid: str = "u1", phase: str = "Pending", task: str = "t") -> Body:
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": rv,
                         "labels": {LABEL_TASK: task},
                         "managedFields": [{"manager": "kubelet"}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "agent", "image": "x"}]},
            "status": {"phase": phase, "containerStatuses": [{
                "name": "agent", "image": "x", "imageID": "sha", "containerID": "c",
                "ready": True, "restartCount": 0, "state": {"running": {}}}]}}


def test_a_newer_view_replaces_an_older_one_never_the_reverse() -> None:
    cache = PodCache()
    cache.seen(pod("t-a1", "20", phase="Running"))
    cache.seen(pod("t-a1", "10", phase="Pending"))  # the create's answer, arriving late
    assert [p["status"]["phase"] for p in cache.of("ns", "t")] == ["Running"]
    cache.seen(pod("t-a1", "30", phase="Failed"))
    assert [p["status"]["phase"] for p in cache.of("ns", "t")] == ["Failed"]


def test_a_new_incarnation_of_a_name_replaces_the_old_and_its_deletion_does_not() -> None:
    cache = PodCache()
    cache.seen(pod("t-a1", "50", uid="old"))
    cache.seen(pod("t-a1", "5", uid="new"))  # another uid: versions are not compared
    assert cache.of("ns", "t")[0]["metadata"]["uid"] == "new"
    cache.seen(pod("t-a1", "51", uid="old"), deleted=True)  # the old one's DELETED, late
    assert len(cache) == 1
    cache.seen(pod("t-a1", "6", uid="new"), deleted=True)
    assert cache.of("ns", "t") == [] and len(cache) == 0


def test_pods_are_indexed_by_their_task_label_and_unlabelled_ones_ignored() -> None:
    cache = PodCache()
    cache.seen(pod("a-a1", "1", task="a"))
    cache.seen(pod("b-a1", "2", uid="u2", task="b"))
    stray = pod("x", "3", uid="u3")
    del stray["metadata"]["labels"][LABEL_TASK]
    cache.seen(stray)
    assert [p["metadata"]["name"] for p in cache.of("ns", "a")] == ["a-a1"]
    cache.replace("ns", "a", [])
    assert cache.of("ns", "a") == [] and len(cache) == 1
    cache.gone("ns", "b", "b-a1")
    assert len(cache) == 0


def test_trim_keeps_what_decide_reads_and_drops_the_rest() -> None:
    kept = trim(pod("t-a1", "1"))
    assert "managedFields" not in kept["metadata"] and kept["metadata"]["labels"]
    assert kept["spec"] == {"nodeName": "n1"}
    assert kept["status"]["containerStatuses"] == [
        {"name": "agent", "ready": True, "restartCount": 0, "state": {"running": {}}}]


def test_only_the_event_of_the_last_own_write_is_an_echo() -> None:
    from tether_operator.metrics import OperatorMetrics
    from tether_operator.reconcile import Reconciler
    from tether_operator.settings import OperatorSettings

    rec = Reconciler(None, OperatorSettings(), OperatorMetrics())  # type: ignore[arg-type]
    rec._own_writes[("ns", "t")] = "42"
    assert not rec.echo("ns", "t", "41")  # an earlier version: someone else's, or older
    assert not rec.echo("ns", "u", "42")  # another task
    assert rec.echo("ns", "t", "42")  # our write coming back: wakes nothing
    assert not rec.echo("ns", "t", "42")  # once: a replay of that version wakes the task
