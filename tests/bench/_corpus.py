"""A generated corpus of agent conversations for the token estimate (tests/bench/estimate_error.py).

Deterministic (a seeded ``random.Random``) and written here, not copied: word lists typed for this
file, combined into the kinds of text an agent's context holds — prose, code, JSON tool results,
logs, numbers and identifiers, hashes and base64, accented Latin, Cyrillic and Chinese. Each
conversation grows step by step as an agent's does (an assistant turn, then a tool result or a
user turn), so an estimate can be anchored on the previous call of the same conversation.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["KINDS", "conversation", "conversations", "text"]

Message = dict[str, Any]


def _words(text: str) -> list[str]:
    return text.split()



_COMMON = _words(
    "the of and to in is that for it as with was on be by this are or from at which but have "
    "not an they you were their one all we can has there been if more when will would who so "
    "no about out up what into its time only could new them some these than other then two "
    "may first any like now my such make over our even most after also made many did before "
    "must through back years where much your way well down should because each just those "
    "people how too little state good very world still own see men work long get here between "
    "both life being under never day same another know while last might us great old year off "
    "come since against go came right used take three place without again around however home "
    "small found thought went say part once general high upon school every does got united "
    "left number course war until always away something fact though water less public put "
    "think almost hand enough far took head yet government system better set told nothing "
    "night end why called didn eyes find going look asked later knew point next program city "
    "business give group toward young days let room president side social given present"
)
_TECH = _words(
    "reconciliation idempotency Kubernetes checkpointing sidecar orchestration serialisation "
    "deserialization throughput latency compaction tokenizer observability retries backoff "
    "jitter envelope ledger journal eviction PersistentVolumeClaim namespace controller "
    "webhook admission finalizer annotation configuration replication quorum consensus "
    "heartbeat lighthouse cartography astronomy hydrology photosynthesis mitochondria "
    "thermodynamics epistemology Bayesian heteroscedasticity eigenvalue polynomial"
)
_IDENTS = _words("spec status budget_usd reserved tokens attempt step_count retry_policy "
                 "max_elapsed call_key journal_path span_id trace_id price_per_mtok summary_cache "
                 "compact_at "
                 "working_tier archive_store http_client upstream_url deadline_s")
_ACCENTED = _words("déjà vu über straße café façade naïve résumé Müller Göteborg señor año "
                   "crème brûlée être garçon élève Ångström fjärran Zürich Kraków łódź")
_CYRILLIC = _words("привет мир данные задача модель ответ сервер вызов бюджет память время "
                   "контекст сообщение инструмент")
_CHINESE = _words("数据 模型 服务器 任务 预算 内存 时间 上下文 消息 工具 调用 重试 检查点 日志 "
                  "结果 问题 答案 文件 网络 系统")


def _prose(rng: random.Random, words: int) -> str:
    out: list[str] = []
    sentence = 0
    for _ in range(words):
        w = rng.choice(_TECH) if rng.random() < 0.08 else rng.choice(_COMMON)
        if sentence == 0:
            w = w.capitalize()
        out.append(w)
        sentence += 1
        if sentence > rng.randint(6, 18):
            out[-1] += rng.choice(".....?!;:")
            sentence = 0
        elif rng.random() < 0.06:
            out[-1] += ","
    return " ".join(out) + "."


def _code(rng: random.Random, lines: int) -> str:
    out = []
    for i in range(lines):
        a, b, c = (rng.choice(_IDENTS) for _ in range(3))
        out.append(rng.choice((
            f"def {a}_{i}(self, {b}: int, {c}: str | None = None) -> dict[str, Any]:",
            f"    {a} = self.{b}.get({c!r}, {rng.randint(0, 9999)})",
            f"    if {a} is None or len({b}) > {rng.randint(1, 512)}:",
            f"        raise ValueError(f\"{a} must be set (got {{{b}!r}})\")",
            f"    return {{\"{a}\": {b}, \"{c}\": [x * {rng.random():.3f} for x in {c}]}}",
            f"# {_prose(rng, rng.randint(4, 12))}",
        )))
    return "\n".join(out)


def _json(rng: random.Random, records: int) -> str:
    rows = []
    for _ in range(records):
        rows.append(
            f'{{"id": "{rng.getrandbits(64):016x}", "name": "{rng.choice(_TECH)}", '
            f'"score": {rng.uniform(-1000, 1000):.4f}, "count": {rng.randint(0, 10**6)}, '
            f'"created": "2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T'
            f'{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z", '
            f'"url": "https://example.org/{rng.choice(_IDENTS)}/{rng.randint(1, 99999)}", '
            f'"tags": ["{rng.choice(_COMMON)}", "{rng.choice(_COMMON)}"], '
            f'"ok": {rng.choice(("true", "false", "null"))}}}')
    return "[" + ", ".join(rows) + "]"


def _log(rng: random.Random, lines: int) -> str:
    return "\n".join(
        f"2026-11-30 {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        f".{rng.randint(0, 999):03d} {rng.choice(('INFO', 'WARNING', 'ERROR', 'DEBUG'))} "
        f"tether.{rng.choice(_IDENTS)}: {_prose(rng, rng.randint(5, 14))} "
        f"(pid={rng.randint(1, 65535)}, path=/var/lib/{rng.choice(_IDENTS)}/{rng.randint(0, 99)})"
        for _ in range(lines))


def _blob(rng: random.Random, size: int) -> str:
    raw = rng.randbytes(size)
    if rng.random() < 0.5:
        return "sha256 " + raw.hex()
    return "data:application/octet-stream;base64," + base64.b64encode(raw).decode()


def _foreign(rng: random.Random, words: int) -> str:
    pool = rng.choice((_ACCENTED, _CYRILLIC, _CHINESE))
    sep = "" if pool is _CHINESE and rng.random() < 0.7 else " "
    return sep.join(rng.choice(pool) if rng.random() < 0.7 else rng.choice(_COMMON)
                    for _ in range(words))


KINDS: dict[str, Callable[[random.Random], str]] = {
    "prose": lambda r: _prose(r, r.randint(20, 600)),
    "code": lambda r: _code(r, r.randint(3, 60)),
    "json": lambda r: _json(r, r.randint(1, 30)),
    "log": lambda r: _log(r, r.randint(2, 40)),
    "blob": lambda r: _blob(r, r.randint(16, 600)),
    "foreign": lambda r: _foreign(r, r.randint(10, 300)),
}
# How often each kind is a tool result: an agent's context is mostly prose and structured data.
_WEIGHTS = {"prose": 5, "code": 2, "json": 3, "log": 2, "blob": 1, "foreign": 1}


def text(rng: random.Random, kind: str | None = None) -> str:
    kind = kind or rng.choices(list(_WEIGHTS), weights=list(_WEIGHTS.values()))[0]
    return KINDS[kind](rng)


def conversation(seed: int, steps: int) -> list[Message]:
    """System prompt, task, then ``steps`` steps: an assistant tool call and its result, or an
    assistant answer and the user's next turn."""
    rng = random.Random(seed)
    msgs: list[Message] = [{"role": "system", "content": _prose(rng, rng.randint(30, 400))},
                           {"role": "user", "content": "TASK: " + text(rng, "prose")}]
    for i in range(steps):
        if rng.random() < 0.7:
            args = f'{{"q": "{rng.choice(_TECH)} {rng.randint(0, 999)}", "page": {i}}}'
            msgs.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{seed}_{i}", "type": "function",
                 "function": {"name": rng.choice(_IDENTS), "arguments": args}}]})
            msgs.append({"role": "tool", "tool_call_id": f"call_{seed}_{i}", "content": text(rng)})
        else:
            msgs.append({"role": "assistant", "content": _prose(rng, rng.randint(5, 200))})
            msgs.append({"role": "user", "content": text(rng)})
    return msgs


def conversations(count: int = 40, steps: int = 30, seed: int = 20261130
                  ) -> Iterator[list[Message]]:
    for k in range(count):
        yield conversation(seed + k, steps)
