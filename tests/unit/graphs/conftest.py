"""Node tests: each node called as the graph calls it, the domain behind fake ports.

No database. A node's port is the domain function its module imported; a test replaces
that name with `monkeypatch`. The unit of work (`session_scope`, `flush`), the trace of
a transaction (`record_step` with a session) and `request_delivery` are recorders that
keep one ordered log, so a test can say what was asked, in which transaction, in which
order. Events a node buffers (`record_step` without a session) go to a real turn buffer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from traza import clock
from traza.rules import active
from traza.rules.loader import LoadedRules, defaults
from traza.trace.buffer import turn_scope

THREAD, STEP = "thread-1", 3
RULES = defaults()


@pytest.fixture(autouse=True)
def clean_db() -> None:
    """Nodes against fake ports: no database (overrides the suite's fixture)."""


@pytest.fixture(autouse=True)
def system_clock() -> Iterator[None]:
    yield
    clock.use(clock.SystemClock())


@pytest.fixture
def runtime() -> Runtime[Context]:
    """The run-time context the service passes: the offline path, bot `traza`."""
    return Runtime(context=Context(use_llm=False))


@pytest.fixture
def rules(monkeypatch: pytest.MonkeyPatch) -> LoadedRules:
    """The built-in rules, as `traza.rules.active.current()` answers them."""
    return use_rules(monkeypatch, RULES)


def use_rules(monkeypatch: pytest.MonkeyPatch, loaded: LoadedRules) -> LoadedRules:
    async def current() -> LoadedRules:
        return loaded

    monkeypatch.setattr(active, "current", current)
    return loaded


@dataclass
class Step:
    """One node run: its state update and the trace events it left in the turn's buffer."""

    update: Any
    buffered: list[dict[str, Any]]


async def run_step(
    node: Callable[[Any, Runtime[Context]], Awaitable[Any]],
    state: dict[str, Any],
    runtime: Runtime[Context],
) -> Step:
    """Run `node` as one step of a worker turn: thread `THREAD`, step `STEP`, a turn buffer."""
    token = var_child_runnable_config.set(
        {"configurable": {"thread_id": THREAD}, "metadata": {"langgraph_step": STEP}}
    )
    try:
        with turn_scope() as scope:
            update = await node(state, runtime)
            return Step(update=update, buffered=list(scope.events))
    finally:
        var_child_runnable_config.reset(token)


class FakeSession:
    """The session of the node's transaction (a port receives it; nothing runs on it)."""


class Effects:
    """What a node asked of the world, in order: transactions, ports, trace, deliveries."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.session = FakeSession()
        self.calls: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = defaultdict(list)
        self.steps: list[dict[str, Any]] = []
        self.deliveries: list[int] = []

    @asynccontextmanager
    async def session_scope(self) -> AsyncIterator[FakeSession]:
        self.log.append("begin")
        yield self.session
        self.log.append("commit")

    async def flush(self, session: Any, extra: Any = None) -> None:
        assert session is self.session, "the turn's buffer is flushed in the node's transaction"
        self.log.append("flush")

    async def record_step(self, session: Any = None, **event: Any) -> None:
        assert session is self.session, "the event is written in the node's transaction"
        self.steps.append(event)
        self.log.append(f"trace:{event['kind']}")

    async def request_delivery(self, conversation_id: int, *, delay: float = 0) -> None:
        self.deliveries.append(conversation_id)
        self.log.append("deliver")

    def port(self, name: str, returns: Any = None, *, sync: bool = False) -> Any:
        """A fake domain function `name`: records its arguments, answers `returns`.

        `returns` may be a callable of the same arguments (an answer that depends on them).
        """

        def answer(*args: Any, **kwargs: Any) -> Any:
            self.calls[name].append((args, kwargs))
            self.log.append(name)
            return returns(*args, **kwargs) if callable(returns) else returns

        async def async_answer(*args: Any, **kwargs: Any) -> Any:
            return answer(*args, **kwargs)

        return answer if sync else async_answer

    def install(self, monkeypatch: pytest.MonkeyPatch, module: ModuleType, **ports: Any) -> None:
        """Put the recorders and the fake `ports` (name=answer) in place in `module`."""
        for name in ("session_scope", "flush", "record_step", "request_delivery"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, getattr(self, name))
        for name, returns in ports.items():
            assert hasattr(module, name), f"{module.__name__} does not use {name}"
            monkeypatch.setattr(module, name, self.port(name, returns))

    def call(self, name: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The one call of port `name`."""
        calls = self.calls[name]
        assert len(calls) == 1, f"{name} was called {len(calls)} times"
        return calls[0]


@pytest.fixture
def effects() -> Effects:
    return Effects()
