"""The replay graph: today's graph with every node that acts on the world swapped out.

`graphs.conversation.graph.build()` gives the live topology; here the nodes that write
to the outbox, open handoffs, run system actions or read the live conversation are
replaced by recorders. The decision nodes (classify, decide_route, write_reply,
check_guardrails) run unchanged, with today's rules, prompts and model; their trace
events stay in the turn's buffer, which a replay never writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.graph import build
from graphs.conversation.state import ConversationState


@dataclass
class Recording:
    """What one replayed turn would have done."""

    context: dict[str, Any]
    """The turn's state as the live `load_context` saw it (prepared by the runner)."""
    effects: list[dict[str, Any]] = field(default_factory=list)


_recording: ContextVar[Recording | None] = ContextVar("traza_replay_recording", default=None)


@contextmanager
def recording(context: dict[str, Any]) -> Iterator[Recording]:
    """Collect the effects of the graph run inside this block."""
    rec = Recording(context=context)
    token = _recording.set(rec)
    try:
        yield rec
    finally:
        _recording.reset(token)


def _current() -> Recording:
    rec = _recording.get()
    if rec is None:
        raise RuntimeError("the replay graph runs only inside `recording()`")
    return rec


async def replay_context(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The turn's context as recorded, instead of today's database state."""
    return dict(_current().context)


async def record_send(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Record the reply that would go to the outbox."""
    draft = state.get("draft") or {}
    _current().effects.append(
        {"effect": "send", "kind": draft.get("kind") or "text", "text": draft.get("text")}
    )
    return {"turn": []}


async def record_handoff(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Record the handoff that would be opened (the owner stays put: nothing waits)."""
    decision = state.get("decision") or {}
    _current().effects.append(
        {
            "effect": "handoff",
            "rule": decision.get("rule"),
            "team": decision.get("team"),
            "reason": decision.get("reason"),
        }
    )
    return {"turn": []}


async def record_wait(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """A replay never waits for a human."""
    return {}


async def record_system_action(
    state: ConversationState, runtime: Runtime[Context]
) -> dict[str, Any]:
    """Record the system action that would run (no integration is called)."""
    decision = state.get("decision") or {}
    _current().effects.append(
        {"effect": "system", "action": decision.get("action"), "rule": decision.get("rule")}
    )
    return {"turn": []}


_graph: CompiledStateGraph[Any, Any, Any, Any] | None = None


def replay_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    """Today's conversation graph with recorders for effects; no checkpointer."""
    global _graph
    if _graph is None:
        _graph = build(
            load_context=replay_context,
            send_reply=record_send,
            hand_off_to_human=record_handoff,
            wait_for_human=record_wait,
            run_system_action=record_system_action,
        ).compile(name="conversation-replay")
    return _graph
