"""The two HTTP faces of the sidecar.

Agent port (127.0.0.1 only): ``POST /v1/chat/completions``, ``/v1/responses``, ``/v1/messages``,
``POST /tools/{name}`` (and the built-in ``POST /tools/context_archive``), ``/mcp/{name}`` (an MCP
server), ``GET|PUT /checkpoint``, ``GET /context``, ``POST /context/boundary``,
``PUT /result``, ``GET /status``. Ops port:
``/metrics``, ``/healthz``, ``/readyz``.
Every error leaves as JSON with a class and a reason; model routes use the provider's error shape
so the agent's SDK can read it, and tell the SDK not to retry what the sidecar already retried.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .checkpoint_api import CheckpointApi
from .context_api import ContextApi
from .dialects import ANTHROPIC, OPENAI, Dialect
from .errors import NotFound, PayloadTooLarge, SidecarError
from .harness import Harness
from .llm_proxy import handle_llm
from .result_api import ResultApi
from .tool_proxy import ToolPipeline, ToolProxy

__all__ = ["agent_app", "ops_app"]

log = logging.getLogger(__name__)
HARNESS: web.AppKey[Harness] = web.AppKey("harness", Harness)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# None: the Responses dialect (responses_*.py), imported by the first call that needs it
# (_dialect): ~1.5 % of start-up's instructions for an agent that may never use it.
_LLM_ROUTES: dict[str, Dialect | None] = {
    "/v1/chat/completions": OPENAI, "/chat/completions": OPENAI,
    "/v1/responses": None, "/responses": None, "/v1/messages": ANTHROPIC}


def _dialect(path: str) -> Dialect:
    """The dialect a model route (a key of _LLM_ROUTES) speaks."""
    dialect = _LLM_ROUTES[path]
    if dialect is None:
        from .responses_dialect import RESPONSES

        dialect = RESPONSES
    return dialect


def _json(status: int, doc: object, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json",
                        headers=headers)


def _error(request: web.Request, exc: SidecarError) -> web.Response:
    dialect = _dialect(request.path) if request.path in _LLM_ROUTES else None
    headers = {"x-tether-error-class": exc.error_class, "x-should-retry": "false"}
    if exc.retry_after is not None:  # the SDKs honour both (openai-python, anthropic-sdk)
        headers.update({"x-should-retry": "true", "retry-after": f"{exc.retry_after:g}"})
    if dialect is not None:
        doc = dialect.error(exc.error_class, exc.reason)
        doc["tether"] = exc.body()["error"]
        return _json(exc.status, doc, headers)
    return _json(exc.status, exc.body(), headers)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    h = request.app[HARNESS]
    h.in_flight += 1
    try:
        return await handler(request)
    except SidecarError as exc:
        if exc.status >= 500:
            log.warning("%s %s failed: %s: %s", request.method, request.path, exc.error_class,
                        exc.reason)
        return _error(request, exc)
    except web.HTTPRequestEntityTooLarge as exc:
        return _error(request, PayloadTooLarge(
            f"request body over the limit of {request.app['max_body']} bytes "
            "(--max-body-bytes)", text=exc.text))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _json(exc.status, {"error": {"class": "http", "reason": exc.reason}})
    except Exception as exc:
        # A bug of ours: say so loudly, and still never let it look like success.
        log.exception("Unexpected error on %s %s", request.method, request.path)
        return _error(request, SidecarError(f"internal error: {type(exc).__name__}: {exc}"))
    finally:
        h.in_flight -= 1


def agent_app(h: Harness) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=h.settings.max_body_bytes,
                          handler_args={"access_log": None})
    app[HARNESS] = h
    app["max_body"] = h.settings.max_body_bytes
    pipeline = ToolPipeline(h)
    tools = ToolProxy(h, pipeline)
    checkpoints = CheckpointApi(h)
    results = ResultApi(h.settings.state_dir, h.settings.attempt)
    if h.settings.evaluation is not None:
        _evaluation(app, h, results)
    context = ContextApi(h, pipeline)

    def llm(path: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await handle_llm(h, request, _dialect(path))
        return handler

    async def status(_: web.Request) -> web.Response:
        return _json(200, h.status())

    for path in _LLM_ROUTES:
        app.router.add_post(path, llm(path))
    app.router.add_post("/tools/context_archive", context.archive)  # before /tools/{name}
    app.router.add_post("/tools/{name}", tools.handle)
    app.router.add_route("*", "/mcp/{name}", _mcp(h, pipeline))
    app.router.add_get("/status", status)
    app.router.add_put("/checkpoint", checkpoints.put)
    app.router.add_get("/checkpoint", checkpoints.get)
    app.router.add_put("/result", results.put)
    app.router.add_get("/context", context.get)
    app.router.add_post("/context/boundary", context.mark)
    return app


def _evaluation(app: web.Application, h: Harness, results: ResultApi) -> None:
    """The record and its delivery (eval_outbox.py): imported only for a task a policy selects.
    Started with the app; at its shutdown (after the calls in flight) the attempt is recorded
    if the agent never answered, and the outbox flushed."""
    from .eval_outbox import Evaluation

    assert h.settings.evaluation is not None
    ev = h.evaluation = Evaluation(h, h.settings.evaluation, results)
    results.on_answer = ev.answered
    app.on_startup.append(ev.start)
    app.on_shutdown.append(ev.stop)


def _mcp(h: Harness, pipeline: ToolPipeline) -> Handler:
    """``/mcp/{name}``; the MCP code is imported only when the task declares an MCP server."""
    if not any(t.mcp is not None for t in h.task.spec.tools):
        async def no_server(request: web.Request) -> web.StreamResponse:
            raise NotFound(f"unknown MCP server {request.match_info['name']!r}: this task "
                           "declares none (spec.tools[].mcp)")
        return no_server
    from .mcp_proxy import McpProxy

    return McpProxy(h, pipeline).handle


def ops_app(h: Harness) -> web.Application:
    app = web.Application()

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(h.metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return _json(200, {"ok": True})

    async def readyz(_: web.Request) -> web.Response:
        return _json(200 if h.ready else 503, {"ready": h.ready, "phase": h.phase})

    async def status(_: web.Request) -> web.Response:
        return _json(200, h.status())  # read-only: the operator polls it for live status

    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
