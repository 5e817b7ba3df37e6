"""Every sidecar route docs/architecture.md lists is served by the running sidecar."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx

from .proc import Sidecar, task_doc

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def _documented() -> list[tuple[str, str, str]]:
    section = DOC.read_text().split("## Sidecar endpoints", 1)[1].split("\n\n", 2)[1]
    routes = []
    for row in section.splitlines()[2:]:
        port, cell = row.split("|")[1].strip(), row.split("|")[2]
        for method, path in re.findall(r"`(GET|POST|PUT) (/[^`]*)`", cell):
            routes.append(("ops" if port.startswith("9090") else "agent", method, path))
    return routes


def test_every_documented_route_is_served(sidecar: Callable[..., Sidecar],
                                          model_server: str) -> None:
    routes = _documented()
    assert len(routes) >= 10, routes
    sc = sidecar(task_doc(model_server, tools=[
        {"name": "search", "url": model_server + "/nowhere"}]))
    for port, method, path in routes:
        base = sc.ops_url if port == "ops" else sc.url
        url = base + path.replace("{name}", "search")
        r = httpx.request(method, url, content=b"{}", timeout=10)
        # A route that exists may refuse this empty body (4xx) but never with "no such route".
        assert r.status_code not in (404, 405) or r.headers.get("x-tether-error-class"), \
            f"{method} {path} on the {port} port: {r.status_code} {r.text[:200]}"
