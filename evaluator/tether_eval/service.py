"""The evaluator's process: settings, the HTTP app, the judging loop, start and stop.

Routes: ``POST /v1/records`` (:mod:`ingest`), ``GET /healthz`` (the process serves),
``GET /readyz`` (the store answers and the judging loop runs), ``GET /metrics``,
``GET /v1/policies/{name}/status`` (the EvaluationPolicy status it would write: :mod:`status`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tether_sidecar.upstream import AiohttpUpstream, make_upstream

from .anchors import file_source
from .config import ConfigError, EvalConfig, JudgeSpec, load_config
from .evaluate import Evaluator
from .ingest import Ingest
from .judge import JudgeClient
from .metrics import EvalMetrics
from .redaction import RedactionFailed, Redactor
from .status import policy_status
from .store import Store

__all__ = ["Service", "Settings"]

log = logging.getLogger(__name__)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TETHER_EVAL_", extra="forbid")

    config: Path | None = Field(None, description="Rubrics, judges and policies from a YAML "
                                "file (docs/evaluation.md); unset: from the cluster (namespace).")
    namespace: str | None = Field(None, description="Read the Rubrics, Judges and "
                                  "EvaluationPolicies of this namespace from the API server and "
                                  "write the policies' status (when config is unset).")
    status_seconds: float = Field(30.0, gt=0, description="How often policy status is written "
                                  "(with namespace).")
    no_record_grace_seconds: float = Field(
        600.0, gt=0, description="A terminal AgentTask with no record after this long is stored "
        "as outcome no_record (with namespace): its sidecar's outbox retries for a while.")
    database: str = Field("sqlite:///var/lib/tether-eval/eval.db", description="sqlite:///PATH "
                          "(a file on the volume) or postgresql://… (libpq URL).")
    host: str = Field("0.0.0.0", description="Where the HTTP server listens.")
    port: int = Field(8080, ge=0, le=65535, description="Its port (0: any free one).")
    instance: str = Field(default_factory=socket.gethostname, description="This evaluator's "
                          "name in leases: the same name after a restart takes its leases back "
                          "at once (the pod name of a one-replica StatefulSet).")
    secrets_dir: Path = Field(Path("/var/run/secrets/tether"), description="Mounted Secrets, "
                              "DIR/<secret>/<key>: the judges' credentialsSecretRef.")
    concurrency: int = Field(4, ge=1, le=256, description="Records judged at once.")
    lease_seconds: float = Field(120.0, gt=0, description="A leased judgement another "
                                 "instance may take over after this long without an answer.")
    idle_seconds: float = Field(5.0, gt=0, description="With nothing queued, how often the loop "
                                "looks again (leases run out, a new day for a capped judge).")
    judge_timeout_seconds: float = Field(60.0, gt=0, description="One judge call's limit.")
    judge_max_output_tokens: int = Field(512, ge=16, le=8192, description="max_tokens of a "
                                         "judge call (a verdict is short); held in full.")
    backfill_seconds: float = Field(86400.0, gt=0, description="A policy the evaluator learns "
                                    "of (or whose sampling changed) takes up the stored records "
                                    "naming it from this far back, at most (docs/evaluation.md, "
                                    "\"Selection\").")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest record.")
    ca_bundle: Path | None = Field(None, description="Extra CA certificates for the judges.")
    anchors_dir: Path = Field(Path("/etc/tether-eval/anchors"), description="Without a "
                              "cluster: the policies' anchors, DIR/<configMap>/<key> (with "
                              "namespace they are read from the ConfigMap itself).")


def _api_key(settings: Settings, spec: JudgeSpec, judge: str) -> str | None:
    ref = spec.model.credentials_secret_ref
    if ref is None:
        return None
    path = settings.secrets_dir / ref.name / ref.key
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise RuntimeError(f"judge {judge}: cannot read its API key at {path} ({exc}); mount "
                           f"Secret {ref.name} there") from exc


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("The judging loop failed; records are stored but no longer judged",
                  exc_info=task.exception())


class Service:
    def __init__(self, settings: Settings, store: Store, config: EvalConfig,
                 redactor: Redactor, upstream: AiohttpUpstream) -> None:
        self.settings, self.store, self.config = settings, store, config
        self.upstream, self.metrics = upstream, EvalMetrics()
        self.redactor = redactor
        judges = {name: self._judge(name, spec) for name, spec in config.judges.items()}
        # In a cluster every Judge of the namespace read is known (the cap gauge's series).
        namespace = settings.namespace if settings.config is None else None
        self.evaluator = Evaluator(store, config, judges, self.metrics, settings.instance,
                                   settings.concurrency, settings.lease_seconds,
                                   settings.idle_seconds, namespace, settings.backfill_seconds)
        self.ingest = Ingest(store, config, redactor, self.metrics, self.evaluator.wake.set)
        self._loop_task: asyncio.Task[None] | None = None
        self._status_task: asyncio.Task[None] | None = None
        self.kube: Any = None  # tether_operator.kube.Kube when configured from the cluster

    def _judge(self, name: str, spec: JudgeSpec) -> JudgeClient:
        return JudgeClient(name, spec, self.upstream, _api_key(self.settings, spec, name),
                           self.redactor, self.store, self.settings.judge_timeout_seconds,
                           self.settings.judge_max_output_tokens)

    def reconfigure(self, config: EvalConfig) -> None:
        """Judge by ``config`` from now on (a policy, rubric or judge added or changed in the
        cluster). A changed judge gets a new client; calls in flight finish on the old one. A
        judge whose key cannot be read is left out (its policies' records wait), logged. A new
        policy, or one whose sampling changed, takes up its stored records before the next
        batch; a changed judge at its cap has the cap looked at again."""
        if config == self.config:
            return
        judges, changed = {}, []
        for name, spec in config.judges.items():
            old = self.evaluator.judges.get(name)
            if old is not None and old.spec == spec:
                judges[name] = old
                continue
            changed += [name] if old is not None else []
            try:
                judges[name] = self._judge(name, spec)
            except RuntimeError as exc:
                log.error("Judge %s left out: %s", name, exc)
        old_config, self.config = self.config, config
        self.ingest.config = config
        self.evaluator.reconfigured(old_config, config, judges, changed)
        log.info("Configuration changed: policies %s, judges %s", sorted(config.policies),
                 sorted(judges))

    @classmethod
    async def open(cls, settings: Settings, redactor: Redactor,
                   environ: Mapping[str, str] | None = None) -> Service:
        kube = None
        if settings.config is not None:
            config = load_config(settings.config)
        elif settings.namespace is not None:
            from tether_operator.kube import Kube

            from .kube_sync import read_config

            kube = Kube()
            config = await read_config(kube, settings.namespace)
        else:
            raise ConfigError("set TETHER_EVAL_CONFIG (a file) or TETHER_EVAL_NAMESPACE (read "
                              "the configuration from the cluster)")
        try:  # the engine takes seconds to build: now, not on the first record
            await asyncio.get_running_loop().run_in_executor(None, redactor.load)
        except RedactionFailed as exc:
            log.error("The redactor cannot run, so every record fails closed (stored without "
                      "text, never judged): %s", exc)
        store = await Store.open(settings.database)
        upstream = make_upstream(settings.ca_bundle, 1024 * 1024,
                                 os.environ if environ is None else environ)
        service = cls(settings, store, config, redactor, upstream)
        service.kube = kube
        service.ingest.terminal_on_arrival = kube is None
        if kube is not None and settings.namespace is not None:
            from .kube_sync import configmap_source

            service.evaluator.anchor_source = configmap_source(kube, settings.namespace)
        else:
            service.evaluator.anchor_source = file_source(settings.anchors_dir)
        return service

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_post("/v1/records", self.ingest.post)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/v1/policies/{name}/status", self._policy_status)
        return app

    def start(self) -> asyncio.Task[None]:
        """Start the judging loop; the task ends only by failing (its error logged here)."""
        self._loop_task = task = asyncio.create_task(self.evaluator.run(),
                                                     name="tether-eval-judging")
        task.add_done_callback(_log_failure)
        if self.kube is not None and self.settings.namespace is not None:
            self._status_task = asyncio.create_task(self._write_status(),
                                                    name="tether-eval-status")
        return task

    async def _write_status(self) -> None:
        """Every ``status_seconds``: the configuration read again from the API server, tasks
        that ended marked terminal (their records judged from then on), tasks ended without a
        record stored as no_record, and the policies' status written. A failed
        turn is logged and tried again at the next (the status is recomputed each time)."""
        from tether_operator.kube import ApiError

        from .kube_sync import (
            list_tasks,
            mark_terminal,
            read_config,
            store_missing,
            write_judges,
            write_statuses,
        )

        ns = self.settings.namespace
        assert ns is not None
        grace = timedelta(seconds=self.settings.no_record_grace_seconds)
        while True:
            try:
                refused: dict[str, tuple[str, str]] = {}
                self.reconfigure(await read_config(self.kube, ns, refused))
                tasks = await list_tasks(self.kube, ns)
                if await mark_terminal(tasks, self.ingest):
                    self.evaluator.wake.set()
                await store_missing(self.kube, ns, tasks, self.ingest, grace)
                await write_statuses(self.kube, ns, self.evaluator)
                await write_judges(self.kube, ns, self.evaluator, refused)
            except ApiError as exc:
                log.warning("Could not write policy status in %s: %s", self.settings.namespace,
                            exc)
            await asyncio.sleep(self.settings.status_seconds)

    async def close(self) -> None:
        for task in (self._loop_task, self._status_task):
            if task is not None:
                task.cancel()
                await asyncio.wait({task})  # a failure of the loop was logged when it ended
        if self.kube is not None:
            await self.kube.close()
        await self.upstream.aclose()
        await self.store.close()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _readyz(self, request: web.Request) -> web.Response:
        task = self._loop_task
        if task is None or task.done():
            why = "the judging loop stopped" if task is not None else "not started"
            if task is not None and not task.cancelled() and task.exception() is not None:
                why = f"the judging loop failed: {task.exception()!r}"
            return web.json_response({"ready": False, "reason": why}, status=503)
        pending = await self.store.pending()
        return web.json_response({"ready": True, "store": self.store.kind, "pending": pending})

    async def _policy_status(self, request: web.Request) -> web.Response:
        """The status the policy would be given (until the evaluator writes it in-cluster)."""
        name = request.match_info["name"]
        if name not in self.config.policies:
            return web.json_response({"error": f"no policy {name!r} in the evaluator's "
                                      "configuration"}, status=404)
        facts = await self.evaluator.facts(name)
        return web.json_response(policy_status(facts, None, datetime.now(UTC), 0))

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
