"""Evaluator throughput: records ingested per second and judgements per second (issue #10).

    python -m tests.bench.evaluator_throughput                    # SQLite and PostgreSQL
    python -m tests.bench.evaluator_throughput --records 200 --stores sqlite

In one process on 127.0.0.1: the evaluator (tether_eval.service, the sidecar's redactor loaded)
with its store, and the scripted judge answering at once (so judging measures the evaluator,
not a model). Ingest: ``--records`` records of ~1 KB of text (an e-mail address and a key in
each) POSTed over HTTP by ``--clients`` concurrent clients; records/s = records / wall time to
the last 201. Judging: the judging loop (``--concurrency`` judgements at a time, ``--samples``
judge calls each) drains the queue; judged/s = records / wall time to an empty queue. PostgreSQL
is Debian's, started by hack/postgres.sh. The last line is one JSON object, also written to
_out/bench/evaluator_throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.evaluator.conftest import config_doc, record
from tether_eval.redaction import load
from tether_eval.service import Service, Settings
from tether_examples._serve import serving
from tether_examples.scripted_judge import JudgeScript, ScriptedJudge

ROOT = Path(__file__).resolve().parents[2]
TEXT = ("The customer (write to ops.lead@example.com) asked for a refund of order 4471; the "
        "agent checked the ledger with key sk-proj-Bench0123456789Bench0123456789Bench01 and "
        "replied. ") * 4


async def _post_all(url: str, n: int, clients: int) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def client(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            doc = record(f"b{i:05d}", answer=TEXT + " TRUTH:PASS", instructions=TEXT)
            async with http.post(url + "/v1/records", json=doc) as r:
                if r.status != 201:
                    raise RuntimeError(f"record {i}: HTTP {r.status} {await r.text()}")

    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return time.perf_counter() - started


async def _drain(svc: Service) -> float:
    started = time.perf_counter()
    while await svc.evaluator.step():
        pass
    return time.perf_counter() - started


async def _store_only(db_url: str, n: int) -> dict[str, float]:
    """The store alone: committed record inserts per second, one at a time and 8 at once, and
    the cost of the hop to the store's thread (an empty transaction)."""
    from tether_eval.store import Store

    store = await Store.open(db_url)
    try:
        doc = record("s", answer=TEXT)
        started = time.perf_counter()
        for i in range(n):
            await store.put_record({**doc, "uid": f"s{i}"}, "{}", [])
        serial = time.perf_counter() - started
        started = time.perf_counter()
        await asyncio.gather(*(store.put_record({**doc, "uid": f"c{i}"}, "{}", [])
                               for i in range(n)))
        gathered = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(n):
            await store.pending()
        read = time.perf_counter() - started
    finally:
        await store.close()
    return {"inserts_per_s": round(n / serial, 1), "inserts_per_s_8_at_once":
            round(n / gathered, 1), "read_tx_ms": round(read / n * 1000, 3)}


async def run_one(db_url: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    judge = ScriptedJudge(JudgeScript(seed=1))
    redactor = load()
    redactor.load()
    async with serving(judge.app()) as jurl:
        cfg = tmp / f"config-{abs(hash(db_url))}.yaml"
        cfg.write_text(yaml.safe_dump(config_doc(jurl, samples=args.samples)))
        settings = Settings(config=cfg, database=db_url, host="127.0.0.1", port=0,
                            instance="bench", secrets_dir=tmp, concurrency=args.concurrency)
        svc = await Service.open(settings, redactor, environ={})
        try:
            async with serving(svc.app()) as url:
                ingest_s = await _post_all(url, args.records, args.clients)
            judge_s = await _drain(svc)
            judged = len(await svc.store.verdicts("p1"))
        finally:
            await svc.close()
    store = await _store_only(db_url, args.records)
    return {"store": store, "records": args.records, "ingest_s": round(ingest_s, 3),
            "records_per_s": round(args.records / ingest_s, 1), "judged": judged,
            "judge_calls": len(judge.calls), "judge_s": round(judge_s, 3),
            "judged_per_s": round(judged / judge_s, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=500)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--stores", default="sqlite,postgresql")
    ap.add_argument("--out", default=str(ROOT / "_out" / "bench" / "evaluator_throughput.json"))
    args = ap.parse_args()
    result: dict[str, Any] = {"args": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        for store in args.stores.split(","):
            if store == "sqlite":
                result["sqlite"] = asyncio.run(run_one(f"sqlite://{tmp}/bench.db", args,
                                                       Path(tmp)))
                continue
            out = subprocess.run([str(ROOT / "hack" / "postgres.sh"), "start"], check=True,
                                 capture_output=True, text=True).stdout.split()
            try:
                result["postgresql"] = asyncio.run(run_one(out[0], args, Path(tmp)))
            finally:
                subprocess.run([str(ROOT / "hack" / "postgres.sh"), "stop", out[1]], check=True)
    for store in ("sqlite", "postgresql"):
        if store in result:
            r = result[store]
            print(f"{store:11} ingest {r['records_per_s']:8.1f} records/s   judging "
                  f"{r['judged_per_s']:8.1f} judged/s ({r['judge_calls']} judge calls)   "
                  f"store alone {r['store']['inserts_per_s']:8.1f} inserts/s, a read "
                  f"transaction {r['store']['read_tx_ms']} ms")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
