"""`langgraph dev` loads langgraph.json and runs a conversation turn on the same database."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys

import httpx

from tests.fakes.servers import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def test_langgraph_dev_runs_one_turn_through_its_api(database_url, db):
    port = free_port()
    cli = shutil.which("langgraph") or os.path.join(os.path.dirname(sys.executable), "langgraph")
    env = {**os.environ, "DATABASE_URL": database_url, "LANGSMITH_TRACING": "false"}
    proc = await asyncio.create_subprocess_exec(
        cli, "dev", "--port", str(port), "--no-browser", "--no-reload",
        cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as api:
            for _ in range(240):
                try:
                    if (await api.get("/ok")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.returncode is None, "langgraph dev exited early"
                await asyncio.sleep(0.25)
            else:
                raise AssertionError("langgraph dev did not start")
            thread = (await api.post("/threads", json={})).json()["thread_id"]
            run = await api.post(
                f"/threads/{thread}/runs/wait",
                json={
                    "assistant_id": "conversation",
                    "input": {"turn": [{"type": "text", "text": "Hola, ¿cómo va mi aplicación?"}]},
                },
            )
            assert run.status_code == 200, run.text
            state = run.json()
            assert "classification" in state, state
            assert state["classification"]["intent"] == "application_status"
            assert state["decision"]["rule"] == "default-bot"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        await proc.wait()

    conversation = db.execute("SELECT id, thread_id FROM conversations").fetchone()
    assert conversation["thread_id"] == thread
    out = db.execute("SELECT actor, text FROM messages WHERE direction='out'").fetchall()
    assert len(out) == 1 and "revisión" in out[0]["text"]
    kinds = [r["kind"] for r in db.execute("SELECT kind FROM trace_events ORDER BY id").fetchall()]
    assert kinds[:3] == ["message.received", "turn.started", "classification"]
