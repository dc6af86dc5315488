"""Core benchmark: webhook ack latency and rate, end-to-end turns/s, checkpoint bytes per turn.

Run:  uv run python bench/bench_core.py [--seconds 10] [--turns 400]

Each figure is printed next to its baseline:
- ack: traza's `POST /webhooks/whatsapp` (signature, parse, store, enqueue) against a bare
  FastAPI endpoint that inserts one row; both served by one uvicorn process, no worker.
- turns: traza's worker (procrastinate job → graph with trace → outbox → local channel)
  against a bare LangGraph loop of the same decisions with the Postgres checkpointer.
- checkpoint bytes added per turn at turns 1, 10 and 100 of one conversation.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import (  # noqa: E402
    closed_loop,
    dumps,
    open_loop,
    scratch_database,
    uvicorn_process,
)

SECRET = "bench-secret"


def signed_message(i: int, contacts: int = 500) -> tuple[bytes, dict[str, str]]:
    """A signed one-message webhook from contact `i % contacts`."""
    from traza.ingest.signature import sign

    wa_id = f"52{i % contacts:011d}"
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": "1555", "phone_number_id": "PN1"},
                            "contacts": [{"profile": {"name": "Bench"}, "wa_id": wa_id}],
                            "messages": [
                                {
                                    "from": wa_id,
                                    "id": f"wamid.bench.{uuid.uuid4().hex}",
                                    "timestamp": str(int(time.time())),
                                    "type": "text",
                                    "text": {"body": "hola, ¿cómo va mi aplicación?"},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    body = dumps(payload)
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, SECRET)}


def bare_message(i: int) -> tuple[bytes, dict[str, str]]:
    body, _ = signed_message(i)
    return body, {"Content-Type": "application/json"}


async def ack_section(url: str, seconds: float) -> dict[str, Any]:
    env = {
        "DATABASE_URL": url,
        "WHATSAPP_APP_SECRET": SECRET,
        "TRAZA_COALESCE_SECONDS": "1",
        "TRAZA_HOME": "/tmp/traza-bench-home",
        "TRAZA_DB_POOL_SIZE": "40",  # both servers: above the closed loop's 32 callers
    }
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bare_events (id bigserial PRIMARY KEY, body bytea)")
    results: dict[str, Any] = {}
    for name, app, path, make in (
        ("traza", "api.main:app", "/webhooks/whatsapp", signed_message),
        ("bare", "bench.bare_app:app", "/ingest", bare_message),
    ):
        with uvicorn_process(app, env) as base:
            target = base + path
            await open_loop(target, make, 100, 2)  # warm-up
            row: dict[str, Any] = {}
            for rate in (100, 300):
                row[rate] = await open_loop(target, make, rate, seconds)
            runs = [await closed_loop(target, make, clients=32, seconds=seconds) for _ in range(3)]
            row["max"] = statistics.median(runs)
            row["max_runs"] = runs
            results[name] = row
        print(f"  measured {name}", flush=True)
    return results


async def turns_section(url: str, turns: int, rounds: int = 3) -> dict[str, Any]:
    """Median of `rounds` alternating runs (traza, then the bare loop), fresh contacts each."""
    traza_runs: list[float] = []
    bare_runs: list[float] = []
    replies = 0
    for r in range(rounds):
        rate, accepted, count = await traza_turns(turns, offset=10_000 + r * turns)
        traza_runs.append(rate)
        replies += accepted
        bare_runs.append(await bare_loop(count))
    return {
        "turns": turns * rounds,
        "replies": replies,
        "traza": statistics.median(traza_runs),
        "bare": statistics.median(bare_runs),
        "traza_runs": traza_runs,
        "bare_runs": bare_runs,
    }


async def traza_turns(turns: int, *, offset: int) -> tuple[float, int, int]:
    """Turns/s of traza's worker over `turns` new conversations; (rate, replies, turns)."""
    from sqlalchemy import text

    from traza.db.engine import get_engine
    from traza.db.queue import app as jobs
    from traza.db.queue import defer_turn
    from traza.ingest.payload import parse
    from traza.ingest.store import store_webhook

    async with get_engine().begin() as conn:
        ids: set[int] = set()
        for i in range(turns):
            body, _ = signed_message(i + offset, contacts=10**9)  # a new conversation each
            import json

            result = await store_webhook(
                conn, body=body, signature=None, parsed=parse(json.loads(body))
            )
            ids |= result.conversations_to_run
    async with jobs.open_async():
        for cid in ids:
            await defer_turn(cid, delay=0)
        started = time.perf_counter()
        await jobs.run_worker_async(
            wait=False, concurrency=8, install_signal_handlers=False, delete_jobs="successful"
        )
        while True:  # deliveries deferred by the last turns
            async with get_engine().connect() as conn:
                pending = (
                    await conn.execute(
                        text(
                            "SELECT count(*) FROM messages "
                            "WHERE direction='out' AND status='queued'"
                        )
                    )
                ).scalar_one()
            if not pending:
                break
            await jobs.run_worker_async(
                wait=False, concurrency=8, install_signal_handlers=False, delete_jobs="successful"
            )
        elapsed = time.perf_counter() - started
    async with get_engine().connect() as conn:
        replies = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM messages WHERE direction='out' AND status='accepted' "
                    "AND conversation_id = ANY(:ids)"
                ),
                {"ids": list(ids)},
            )
        ).scalar_one()
    return len(ids) / elapsed, int(replies), len(ids)


async def bare_loop(turns: int) -> float:
    """The same six nodes and decisions, checkpointed to Postgres; no database reads or
    writes of its own (no messages, trace, outbox, jobs or locks)."""
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    import prompts
    from traza.decisions.classifier import classify_turn
    from traza.decisions.guardrails import check_reply
    from traza.decisions.routing import RoutingInputs, decide
    from traza.services.runtime import conversation_graph

    class S(TypedDict, total=False):
        text: str
        c: dict[str, Any]
        d: dict[str, Any]
        draft: str
        ok: bool

    async def load_context(s: S) -> dict[str, Any]:
        return {"text": s["text"]}

    async def classify(s: S) -> dict[str, Any]:
        return {"c": classify_turn([s["text"]]).as_dict()}

    async def decide_route(s: S) -> dict[str, Any]:
        c = s["c"]
        inputs = RoutingInputs(
            intent=c["intent"], confidence=c["confidence"], frustration=c["frustration"],
            wants_human=c["wants_human"], opt_out=c["opt_out"], owner="bot", opted_out=False,
            unknown_streak=0,
        )  # fmt: skip
        return {"d": decide(inputs).as_dict()}

    async def write_reply(s: S) -> dict[str, Any]:
        return {"draft": prompts.reply(s["c"]["intent"], s["c"]["language"])}

    async def check_guardrails(s: S) -> dict[str, Any]:
        return {"ok": check_reply(s["draft"]).allowed}

    async def send_reply(s: S) -> dict[str, Any]:
        return {"text": ""}

    builder = StateGraph(S)
    for fn in (load_context, classify, decide_route, write_reply, check_guardrails, send_reply):
        builder.add_node(fn)
    builder.add_edge(START, "load_context")
    builder.add_edge("load_context", "classify")
    builder.add_edge("classify", "decide_route")
    builder.add_edge("decide_route", "write_reply")
    builder.add_edge("write_reply", "check_guardrails")
    builder.add_edge("check_guardrails", "send_reply")
    builder.add_edge("send_reply", END)
    checkpointer = (await conversation_graph()).checkpointer
    graph = builder.compile(checkpointer=checkpointer)
    gate = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        async with gate:
            await graph.ainvoke(
                {"text": "hola, ¿cómo va mi aplicación?"},
                {"configurable": {"thread_id": f"bare-{i}-{uuid.uuid4().hex}"}},
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(turns)))
    return turns / (time.perf_counter() - started)


async def checkpoint_section(url: str, turns: int = 100) -> dict[int, int]:
    from sqlalchemy import text

    from traza.db.engine import get_engine
    from traza.db.queue import app as jobs
    from traza.ingest.payload import parse
    from traza.ingest.store import store_webhook
    from traza.services.turns import run_turn

    sizes: dict[int, int] = {}
    size_sql = text(
        "SELECT (SELECT coalesce(sum(pg_column_size(c.*)), 0) FROM checkpoints c "
        "        WHERE thread_id = :t) "
        "     + (SELECT coalesce(sum(pg_column_size(b.*)), 0) FROM checkpoint_blobs b "
        "        WHERE thread_id = :t) "
        "     + (SELECT coalesce(sum(pg_column_size(w.*)), 0) FROM checkpoint_writes w "
        "        WHERE thread_id = :t)"
    )
    import json

    texts = ["hola", "¿cómo va mi aplicación?", "gracias", "¿qué requisitos tiene la vacante?"]
    async with jobs.open_async():
        previous = 0
        for n in range(1, turns + 1):
            body, _ = signed_message(-1, contacts=10**9)  # one contact of its own
            payload = json.loads(body)
            payload["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = texts[
                n % len(texts)
            ]
            async with get_engine().begin() as conn:
                result = await store_webhook(
                    conn, body=dumps(payload), signature=None, parsed=parse(payload)
                )
            (cid,) = result.conversations_to_run
            await run_turn(cid)
            async with get_engine().connect() as conn:
                thread = (
                    await conn.execute(
                        text("SELECT thread_id FROM conversations WHERE id = :c"), {"c": cid}
                    )
                ).scalar_one()
                total = int((await conn.execute(size_sql, {"t": thread})).scalar_one())
            if n in (1, 10, 100):
                sizes[n] = total - previous
            previous = total
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="seconds per load step")
    parser.add_argument("--turns", type=int, default=400, help="conversations for turns/s")
    parser.add_argument(
        "--skip-ack", action="store_true", help="only the turns and checkpoint sections"
    )
    args = parser.parse_args()

    with scratch_database() as url:
        os.environ.update(
            {
                "DATABASE_URL": url,
                "TRAZA_HOME": "/tmp/traza-bench-home",
                "TRAZA_COALESCE_SECONDS": "0",
            }
        )
        from traza.db.migrate import upgrade

        asyncio.run(upgrade(url))
        print(f"cpus={os.cpu_count()} database={url.split('@')[-1]}", flush=True)

        if not args.skip_ack:
            ack = asyncio.run(ack_section(url, args.seconds))
            t, b = ack["traza"], ack["bare"]
            print("\nWebhook ack (one uvicorn process, no worker)")
            print(f"{'':24}{'traza':>12}{'bare':>12}{'traza/bare':>12}")
            for rate in (100, 300):
                for key in ("p50_ms", "p99_ms"):
                    print(
                        f"{rate} msg/s {key:<15}{t[rate][key]:12.2f}{b[rate][key]:12.2f}"
                        f"{t[rate][key] / b[rate][key]:12.2f}"
                    )
                print(f"{rate} msg/s errors{'':9}{t[rate]['errors']:12d}{b[rate]['errors']:12d}")
            print(
                "max sustained runs: traza "
                + ", ".join(f"{v:.0f}" for v in t["max_runs"])
                + " | bare "
                + ", ".join(f"{v:.0f}" for v in b["max_runs"])
                + " (medians below)"
            )
            ratio = t["max"] / b["max"]
            print(f"max sustained req/s{'':5}{t['max']:12.1f}{b['max']:12.1f}{ratio:12.2f}")

        with psycopg.connect(url, autocommit=True) as conn:  # start the next sections clean
            conn.execute(
                "TRUNCATE trace_events, message_statuses, messages, handoffs, conversations, "
                "contacts, inboxes, webhook_events, procrastinate_jobs, checkpoints, "
                "checkpoint_blobs, checkpoint_writes CASCADE"
            )

        async def turns_and_bytes() -> tuple[dict[str, float], dict[int, int]]:
            from traza.db.engine import dispose_engine
            from traza.services.runtime import close_graph

            try:
                turns = await turns_section(url, args.turns)
                sizes = await checkpoint_section(url)
            finally:
                await close_graph()
                await dispose_engine()
            return turns, sizes

        turns, sizes = asyncio.run(turns_and_bytes())
        print("\nEnd-to-end turns (offline models, worker concurrency 8)")
        print(f"turns={turns['turns']:.0f} replies accepted={turns['replies']:.0f}")
        runs_t = ", ".join(f"{v:.1f}" for v in turns["traza_runs"])
        runs_b = ", ".join(f"{v:.1f}" for v in turns["bare_runs"])
        print(f"runs: traza [{runs_t}]  bare [{runs_b}]  (medians below)")
        print(
            f"turns/s traza={turns['traza']:.1f} bare LangGraph loop={turns['bare']:.1f} "
            f"ratio={turns['traza'] / turns['bare']:.2f}"
        )
        print("\nCheckpoint bytes added per turn (one conversation)")
        for n, size in sizes.items():
            print(f"turn {n:>3}: {size} bytes")


if __name__ == "__main__":
    main()
