"""The chart's RBAC, rendered without a cluster: the operator may do what it does and no more
(no wildcards; a Secret only by name, for its labels), leader election touches only its Lease,
user roles aggregate.

Needs helm (hack/helm.sh; the make targets pass it as $HELM).
"""

from __future__ import annotations

import pytest

from ._chart import FULL, Doc, Render, env_of, operator_container, render

__all__ = ["render"]  # a fixture, used by name


def rules_for_sa(docs: list[Doc], sa: str, sa_ns: str) -> dict[str | None, list[Doc]]:
    """Rules bound to the service account: {namespace or None (cluster-wide): rules}."""
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
             for d in docs if d["kind"] in ("Role", "ClusterRole")}
    bound: dict[str | None, list[Doc]] = {}
    for b in docs:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if {"kind": "ServiceAccount", "name": sa, "namespace": sa_ns} not in b["subjects"]:
            continue
        ns = b["metadata"].get("namespace")
        ref = b["roleRef"]
        role = roles[(ref["kind"], ns if ref["kind"] == "Role" else None, ref["name"])]
        bound.setdefault(ns, []).extend(role["rules"])
    return bound


def allowed(rules: list[Doc], group: str, resource: str, verb: str, name: str = "") -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
               and (not r.get("resourceNames") or name in r["resourceNames"]) for r in rules)


# What the operator calls (operator/tether_operator/kube.py and leader.py, and kopf's watches
# and events); the e2e test runs it with this RBAC and checks its log for refusals.
WORKLOAD_CALLS = [
    ("tether.dev", "agenttasks", v) for v in ("get", "list", "watch", "patch")] + [
    ("tether.dev", "agenttasks/status", "patch"),
    ("tether.dev", "agentbudgets", "get"), ("tether.dev", "agentbudgets", "list"),
    ("tether.dev", "agentbudgets", "watch"), ("tether.dev", "agentbudgets/status", "update"),
    ("tether.dev", "evaluationpolicies", "list"),  # a pod's TETHER_EVALUATION (issue #10)
    ("tether.dev", "evaluationpolicies", "watch"),
    ("", "pods", "list"), ("", "pods", "watch"), ("", "pods", "create"), ("", "pods", "delete"),
    ("", "pods", "patch"), ("", "pods", "get"),  # the attempt-figures finalizer (issue #9)
    ("", "configmaps", "create"), ("", "configmaps", "get"), ("", "configmaps", "update"),
    ("", "serviceaccounts", "create"), ("", "persistentvolumeclaims", "create"),
    ("", "persistentvolumeclaims", "get"), ("", "secrets", "get"),  # guards.py, metadata only
    ("", "events", "create"), ("", "events", "list")]


@pytest.mark.parametrize("values", [{}, FULL], ids=["clusterwide", "namespaces"])
def test_rbac_grants_what_the_operator_does_and_no_wildcards(render: Render,
                                                             values: Doc) -> None:
    docs = render(values)
    for role in (d for d in docs if d["kind"] in ("Role", "ClusterRole")):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(key, []), (role["metadata"]["name"], rule)
            assert "pods/eviction" not in rule["resources"]
            if "secrets" in rule["resources"]:  # one named Secret's labels, never a listing
                assert rule["resources"] == ["secrets"] and rule["verbs"] == ["get"], rule
    bound = rules_for_sa(docs, "tether-operator", "tether-system")
    scopes = values.get("watchNamespaces") or [None]
    for scope in scopes:
        for call in WORKLOAD_CALLS:
            assert allowed(bound.get(scope, []), *call), (scope, call)
        # Status only: the operator never writes a budget's spec, nor any other object's.
        for verb in ("update", "patch", "delete"):
            assert not allowed(bound.get(scope, []), "tether.dev", "agentbudgets", verb)
        for verb in ("delete", "list", "watch"):  # one task's ConfigMap, by name
            assert not allowed(bound.get(scope, []), "", "configmaps", verb)
        for verb in ("list", "watch", "update", "patch", "create", "delete"):
            assert not allowed(bound.get(scope, []), "", "secrets", verb)
    if values.get("watchNamespaces"):  # nothing but kopf's discovery cluster-wide
        cluster = bound[None]
        assert {r for rule in cluster for r in rule["resources"]} == {
            "customresourcedefinitions", "namespaces"}
        assert {v for rule in cluster for v in rule["verbs"]} == {"list", "watch"}
        assert set(bound) == {None, "a", "b", "tether-system"}
    assert allowed(bound[None], "apiextensions.k8s.io", "customresourcedefinitions", "watch")


def test_leader_election_may_touch_only_its_lease(render: Render) -> None:
    docs = render()
    env = env_of(operator_container(docs))
    lease = env["TETHER_OPERATOR_LEASE_NAME"]
    bound = rules_for_sa(docs, "tether-operator", "tether-system")
    here = bound["tether-system"]
    for verb in ("get", "create", "update"):
        assert allowed(here, "coordination.k8s.io", "leases", verb, lease), verb
    assert not allowed(here, "coordination.k8s.io", "leases", "get", "someone-elses")
    assert not any(allowed(rules, "coordination.k8s.io", "leases", v, lease)
                   for scope, rules in bound.items() if scope != "tether-system"
                   for v in ("get", "update", "create"))


def test_user_roles_aggregate_and_only_admin_writes_budgets(render: Render) -> None:
    docs = render()
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
    edit, admin = roles["tether-edit"], roles["tether-admin"]
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert allowed(edit["rules"], "tether.dev", "agenttasks", "create")
    assert not allowed(edit["rules"], "tether.dev", "agentbudgets", "update")
    assert "rbac.authorization.k8s.io/aggregate-to-edit" not in admin["metadata"]["labels"]
    assert allowed(admin["rules"], "tether.dev", "agentbudgets", "update")
    docs = render({"rbac": {"aggregateToDefaultRoles": False}})
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole"] == [
        "tether-operator-tether-system"]


def test_watch_namespaces_become_arguments_and_roles(render: Render) -> None:
    docs = render(FULL)
    args = operator_container(docs)["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=a",
                                                                "--namespace=b"]
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs
             if d["kind"] == "Role"}
    assert roles == {("a", "tether-operator"), ("b", "tether-operator"),
                     ("tether-system", "tether-operator-leader")}
