"""The chart's part of issue #10, rendered without a cluster: the evaluator's RBAC (off by
default), the operator's evaluator URL, the user roles for the evaluation kinds.

Needs helm (hack/helm.sh; the make targets pass it as $HELM).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tether_operator.settings import OperatorSettings

from ._chart import Doc, Render, env_of, failure, operator_container, render
from .test_chart_rbac import allowed, rules_for_sa

__all__ = ["render"]  # a fixture, used by name

URL = "http://tether-evaluator.tether-system.svc:8080"
# What the evaluator does (issue #10 contracts, "Who does what", step 3).
EVALUATOR_CALLS = [("tether.dev", r, v) for r in ("agenttasks", "rubrics", "judges",
                                                  "evaluationpolicies")
                   for v in ("get", "list", "watch")] + [
    ("tether.dev", "evaluationpolicies/status", "patch"),
    ("tether.dev", "evaluationpolicies/status", "update"),
    ("tether.dev", "rubrics/status", "patch"), ("tether.dev", "judges/status", "patch"),
    ("", "configmaps", "get"), ("", "secrets", "get"), ("", "events", "create")]


def test_no_evaluator_objects_and_no_url_by_default(render: Render) -> None:
    docs = render()
    assert not [d for d in docs if "evaluator" in d["metadata"]["name"]]
    assert "TETHER_OPERATOR_EVALUATOR_URL" not in env_of(operator_container(docs))


@pytest.mark.parametrize("namespaces", [[], ["a", "b"]], ids=["clusterwide", "namespaces"])
def test_evaluator_rbac_grants_what_it_does_and_no_more(render: Render,
                                                        namespaces: list[str]) -> None:
    docs = render({"evaluator": {"enabled": True}, "watchNamespaces": namespaces})
    [sa] = [d for d in docs if d["kind"] == "ServiceAccount"
            and d["metadata"]["name"] == "tether-evaluator"]
    assert sa["metadata"]["namespace"] == "tether-system"
    bound = rules_for_sa(docs, "tether-evaluator", "tether-system")
    assert set(bound) == ({*namespaces} if namespaces else {None})
    for rules in bound.values():
        for call in EVALUATOR_CALLS:
            assert allowed(rules, *call), call
        for resource in ("agenttasks", "rubrics", "judges", "evaluationpolicies"):
            for verb in ("create", "update", "patch", "delete"):
                assert not allowed(rules, "tether.dev", resource, verb), (resource, verb)
        for resource in ("configmaps", "secrets"):  # by name only: never a listing
            for verb in ("list", "watch", "create", "update", "patch", "delete"):
                assert not allowed(rules, "", resource, verb), (resource, verb)
        assert not allowed(rules, "", "pods", "get")
        assert not any("*" in r[k] for r in rules for k in ("apiGroups", "resources", "verbs"))


def test_the_operator_may_list_policies_but_never_write_them(render: Render) -> None:
    bound = rules_for_sa(render(), "tether-operator", "tether-system")[None]
    assert allowed(bound, "tether.dev", "evaluationpolicies", "list")
    for verb in ("create", "update", "patch", "delete"):
        assert not allowed(bound, "tether.dev", "evaluationpolicies", verb)
        assert not allowed(bound, "tether.dev", "evaluationpolicies/status", verb)


def test_evaluator_url_reaches_the_operator_settings(render: Render,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    env = env_of(operator_container(render({"evaluator": {"url": URL}})))
    assert env["TETHER_OPERATOR_EVALUATOR_URL"] == URL
    for name, value in env.items():
        if name.startswith("TETHER_OPERATOR_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("POD_NAMESPACE", "tether-system")
    assert OperatorSettings().evaluator_url == URL


@pytest.mark.parametrize(("values", "message"), [
    ({"evaluator": {"url": "tether-evaluator:8080"}}, "evaluator/url"),
    ({"operator": {"settings": {"evaluator_url": URL}}}, "use evaluator.url instead"),
    ({"evaluator": {"enable": True}}, "additional properties 'enable' not allowed"),
])
def test_bad_evaluator_values_are_refused(values: Doc, message: str, tmp_path: Path) -> None:
    assert message in failure(values, tmp_path)


def test_user_roles_cover_the_evaluation_kinds(render: Render) -> None:
    roles = {d["metadata"]["name"]: d for d in render() if d["kind"] == "ClusterRole"}
    view, edit, admin = (roles[f"tether-{r}"]["rules"] for r in ("view", "edit", "admin"))
    for kind in ("rubrics", "judges", "evaluationpolicies"):
        assert allowed(view, "tether.dev", kind, "list")
        assert allowed(view, "tether.dev", f"{kind}/status", "get")
    assert allowed(edit, "tether.dev", "rubrics", "create")
    assert allowed(edit, "tether.dev", "evaluationpolicies", "update")
    assert not allowed(edit, "tether.dev", "judges", "create")  # a Judge spends: admin only
    assert allowed(admin, "tether.dev", "judges", "create")
