"""The compiled conversation graph with its Postgres checkpointer, opened once per process."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph.state import CompiledStateGraph
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from graphs.conversation.graph import builder
from traza.db.engine import database_dsn
from traza.settings import get_settings

_pool: AsyncConnectionPool | None = None
_graph: CompiledStateGraph[Any, Any, Any, Any] | None = None
_lock = asyncio.Lock()


async def conversation_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    """The conversation graph compiled with the PostgreSQL checkpointer."""
    global _pool, _graph
    if _graph is not None:
        return _graph
    async with _lock:
        if _graph is None:
            _pool = AsyncConnectionPool(
                conninfo=database_dsn(),
                min_size=1,
                max_size=10,
                open=False,
                kwargs={
                    "autocommit": True,
                    "prepare_threshold": get_settings().prepare_threshold(),
                    "row_factory": dict_row,
                },
            )
            await _pool.open(wait=True)
            saver = AsyncPostgresSaver(_pool)  # type: ignore[arg-type]
            _graph = builder.compile(checkpointer=saver, name="conversation")
    return _graph


async def drop_dead_connections() -> None:
    """After a database outage: replace the checkpointer's connections the server dropped."""
    if _pool is not None:
        await _pool.check()


async def close_graph() -> None:
    """Close the checkpointer's pool."""
    global _pool, _graph
    if _pool is not None:
        await _pool.close()
    _pool, _graph = None, None


def thread_config(thread_id: str) -> RunnableConfig:
    """The run config that selects a conversation's thread."""
    return {"configurable": {"thread_id": thread_id}}
