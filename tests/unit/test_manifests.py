"""manifests.py for issue #9: what a task's pod is handed (prior spend, the CA bundle, proxies),
its read-only roots, and the generation in the task file. Pure: no cluster.

The pod's Pod Security basics are in test_operator_pure.py; the real node runs these pods in
tests/e2e/test_pod_hardening.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tether_api import parse_agenttask
from tether_operator import manifests
from tether_operator.settings import OperatorSettings

S = OperatorSettings(leader_election=False)


def task(status: dict[str, Any] | None = None, **model: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask",
        "metadata": {"name": "t1", "namespace": "team-a", "uid": "u-1", "generation": 4,
                     "resourceVersion": "7"},
        "spec": {"agent": {"image": "example/agent:1", "env": [{"name": "HOME",
                                                                "value": "/work"}]},
                 "task": {"instructions": "x"},
                 "model": {"provider": "openai", "name": "gpt-4o",
                           "credentialsSecretRef": {"name": "creds", "key": "api-key"},
                           **model},
                 "costEnvelope": {"hardLimitUSD": "1.00"}},
    }
    if status is not None:
        body["status"] = status
    return body


def containers(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = manifests.pod(body, 2, S, None)["spec"]
    (sidecar,), (agent,) = spec["initContainers"], spec["containers"]
    return sidecar, agent


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_a_new_attempt_starts_from_what_earlier_attempts_spent() -> None:
    sidecar, _ = containers(task({"spentUSD": "0.0375", "inputTokens": 1200,
                                  "outputTokens": 90}))
    assert flag(sidecar["command"], "--prior-spent-usd") == "0.0375"
    assert flag(sidecar["command"], "--prior-input-tokens") == "1200"
    assert flag(sidecar["command"], "--prior-output-tokens") == "90"
    first, _ = containers(task())  # no status yet: nothing spent
    assert [flag(first["command"], f) for f in ("--prior-spent-usd", "--prior-input-tokens",
                                                "--prior-output-tokens")] == ["0", "0", "0"]


def test_the_task_file_carries_the_generation_and_still_parses() -> None:
    doc = yaml.safe_load(manifests.config_map(task())["data"]["agenttask.yaml"])
    assert doc["metadata"]["generation"] == 4
    parsed = parse_agenttask(doc)  # the sidecar reads it with the same model
    assert parsed.metadata.uid == "u-1"


def test_both_roots_are_read_only_with_a_tmp_of_their_own() -> None:
    sidecar, agent = containers(task())
    pod = manifests.pod(task(), 1, S, None)["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container, volume in ((sidecar, "sidecar-tmp"), (agent, "agent-tmp")):
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts["/tmp"] == volume and "emptyDir" in volumes[volume]
    assert volumes["sidecar-tmp"]["emptyDir"]["sizeLimit"] == "64Mi"
    # The agent still never sees the key: its only mount is its /tmp.
    assert [m["name"] for m in agent["volumeMounts"]] == ["agent-tmp"]


def test_the_agent_gets_a_writable_home_its_own_env_can_override() -> None:
    _, agent = containers(task())
    names = [e["name"] for e in agent["env"]]
    env = {e["name"]: e["value"] for e in agent["env"]}  # the last of a name wins, as in a pod
    assert env["TMPDIR"] == "/tmp"
    assert names.index("HOME") < len(names) - 1 and env["HOME"] == "/work"
    plain = task()
    plain["spec"]["agent"]["env"] = []
    _, agent = containers(plain)
    assert {e["name"]: e["value"] for e in agent["env"]}["HOME"] == "/tmp"


def test_a_ca_bundle_from_a_config_map_is_mounted_for_the_sidecar_only() -> None:
    body = task(caBundle={"configMapKeyRef": {"name": "corp-ca", "key": "bundle.pem"}})
    sidecar, agent = containers(body)
    assert flag(sidecar["command"], "--ca-bundle") == "/etc/tether/ca/ca.crt"
    mount = next(m for m in sidecar["volumeMounts"] if m["name"] == "ca-bundle")
    assert mount == {"name": "ca-bundle", "mountPath": "/etc/tether/ca", "readOnly": True}
    volume = next(v for v in manifests.pod(body, 1, S, None)["spec"]["volumes"]
                  if v["name"] == "ca-bundle")
    assert volume["configMap"] == {"name": "corp-ca",
                                   "items": [{"key": "bundle.pem", "path": "ca.crt"}]}
    assert all(m["name"] != "ca-bundle" for m in agent["volumeMounts"])


def test_a_ca_bundle_from_a_secret() -> None:
    body = task(caBundle={"secretKeyRef": {"name": "corp-ca", "key": "ca.crt"}})
    volume = next(v for v in manifests.pod(body, 1, S, None)["spec"]["volumes"]
                  if v["name"] == "ca-bundle")
    assert volume["secret"] == {"secretName": "corp-ca",
                                "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    sidecar, _ = containers(task())
    assert "--ca-bundle" not in sidecar["command"]  # none asked: the system store only


def test_the_sidecar_gets_the_operators_proxy_settings_when_set() -> None:
    proxied = OperatorSettings(leader_election=False, sidecar_https_proxy="http://proxy:3128",
                               sidecar_no_proxy=".svc,10.0.0.0/8")
    spec = manifests.pod(task(), 1, proxied, None)["spec"]
    (sidecar,), (agent,) = spec["initContainers"], spec["containers"]
    assert sidecar["env"] == [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"},
                              {"name": "NO_PROXY", "value": ".svc,10.0.0.0/8"}]
    assert not {"HTTPS_PROXY", "NO_PROXY"} & {e["name"] for e in agent["env"]}
    plain, _ = containers(task())
    assert "env" not in plain  # none configured: the sidecar connects directly


def test_the_sidecar_asks_for_its_measured_memory_and_the_docs_say_the_same() -> None:
    """Requests and limits from the footprint bench (docs/benchmarks.md): ~81 MB after 1,000
    calls near the budget under a 96Mi request; the limit keeps room for the tokenizer."""
    sidecar, _ = containers(task())
    assert sidecar["resources"] == {"requests": {"cpu": "100m", "memory": "96Mi"},
                                    "limits": {"memory": "256Mi"}}
    doc = (Path(__file__).parents[2] / "docs" / "operator.md").read_text()
    assert "Sidecar resources: 100m CPU, 96Mi request, 256Mi limit" in " ".join(doc.split())


def test_an_evaluated_task_s_sidecar_has_room_for_the_redactor() -> None:
    """The redactor (~89 MB, docs/evaluation.md) loads at the end of a task a policy selects:
    that sidecar's limit is higher, its request the same; docs say so."""
    spec = manifests.pod(task(), 2, S, None, evaluation='{"policies": []}')["spec"]
    (sidecar,) = spec["initContainers"]
    assert sidecar["resources"] == {"requests": {"cpu": "100m", "memory": "96Mi"},
                                    "limits": {"memory": "384Mi"}}
    doc = (Path(__file__).parents[2] / "docs" / "operator.md").read_text()
    assert "gets a 384Mi limit" in " ".join(doc.split())


def test_mcp_servers_are_named_apart_from_http_tools() -> None:
    # An MCP server's name in TETHER_TOOLS made the reference agent offer it to the model as an
    # HTTP tool and call POST /tools/{name}, which the sidecar refuses (it is at /mcp/{name}).
    t = task()
    t["spec"]["tools"] = [{"name": "search", "url": "http://search:8080/q"},
                          {"name": "files", "mcp": {"url": "http://files:8000/mcp"}}]
    env = {e["name"]: e["value"] for e in manifests.agent_env(t, 1)}
    assert (env["TETHER_TOOLS"], env["TETHER_MCP_SERVERS"]) == ("search", "files")


def test_tether_run_hands_the_agent_the_tool_variables_the_pod_gets() -> None:
    from tether_cli.run import agent_env

    t = task()
    t["spec"]["tools"] = [{"name": "search", "url": "http://search:8080/q"},
                          {"name": "files", "mcp": {"url": "http://files:8000/mcp"}}]
    pod = {e["name"]: e["value"] for e in manifests.agent_env(t, 1)}
    local = agent_env(parse_agenttask(t), "http://127.0.0.1:8181", 1)
    for name in ("TETHER_TOOLS", "TETHER_MCP_SERVERS", "TETHER_MODEL", "TETHER_ATTEMPT"):
        assert local[name] == pod[name], name


def test_the_sidecar_is_handed_its_models_price_resolved() -> None:
    """Resolved here from genai-prices, so the sidecar's start-up need not load its table."""
    from tether_api import ModelSpec
    from tether_sidecar.pricing import Price, resolve

    sidecar, _ = containers(task())
    handed = flag(sidecar["command"], "--model-price")
    assert handed == resolve(ModelSpec(provider="openai", name="gpt-4o"))
    assert Price(ModelSpec(provider="openai", name="gpt-4o"), handed).handed_over
    declared, _ = containers(task(pricing={"inputPerMTok": "1.00", "outputPerMTok": "2.00"}))
    unknown, _ = containers(task(name="no-such-model-xyz"))
    for sidecar in (declared, unknown):  # nothing to hand over: the sidecar decides and says
        assert "--model-price" not in sidecar["command"]
