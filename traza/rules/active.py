"""The rules this process decides with, and their reload.

Every process (API, each worker) reads `TRAZA_CONFIG_DIR/rules.yaml` and notices a
changed file within a second; `POST /rules/reload` and `traza rules check` validate on
demand. A bad file never replaces good rules: the previous version stays active and the
problem is logged and shown by `GET /rules`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from traza.db.engine import autocommit
from traza.rules.loader import LoadedRules, RulesError, defaults, load_file
from traza.settings import get_settings

log = logging.getLogger(__name__)
CHECK_EVERY_SECONDS = 1.0


@dataclass
class _Active:
    loaded: LoadedRules | None = None
    loaded_at: datetime | None = None
    mtime: float | None = None
    checked: float = 0.0
    error: str | None = None


_active = _Active()


def rules_file() -> Path | None:
    """`TRAZA_CONFIG_DIR/rules.yaml` (or `.yml`) when it exists."""
    folder = get_settings().traza_config_dir
    if folder is None:
        return None
    for name in ("rules.yaml", "rules.yml"):
        if (folder / name).is_file():
            return folder / name
    return None


async def known_teams() -> set[str]:
    """Team names in the database (rules may only name these)."""
    async with autocommit() as conn:
        return set((await conn.execute(text("SELECT name FROM teams"))).scalars())


def _mtime(path: Path | None) -> float | None:
    try:
        return path.stat().st_mtime_ns if path else None
    except OSError:
        return None


async def reload() -> LoadedRules:
    """Validate the rules file (or the defaults) and make it active; raise `RulesError`."""
    path = rules_file()
    mtime = _mtime(path)
    try:
        teams = await known_teams()
        loaded = load_file(path, known_teams=teams) if path else defaults()
    except RulesError as exc:
        _active.error, _active.mtime, _active.checked = str(exc), mtime, time.monotonic()
        raise
    changed = _active.loaded is None or loaded.version != _active.loaded.version
    _active.loaded, _active.mtime, _active.checked, _active.error = (
        loaded,
        mtime,
        time.monotonic(),
        None,
    )
    if changed:
        _active.loaded_at = datetime.now(UTC)
        log.info("rules %s active (%s)", loaded.version, loaded.source)
    return loaded


async def current() -> LoadedRules:
    """The active rules; a changed file is picked up here (at most one check a second)."""
    if _active.loaded is None:
        return await reload()
    if time.monotonic() - _active.checked >= CHECK_EVERY_SECONDS:
        _active.checked = time.monotonic()
        if _mtime(rules_file()) != _active.mtime:
            try:
                await reload()
            except RulesError as exc:
                log.error("rules file refused, keeping %s:\n%s", _active.loaded.version, exc)
    return _active.loaded


def status() -> dict[str, object]:
    """What `GET /rules` shows about the active rules."""
    loaded = _active.loaded
    return {
        "version": loaded.version if loaded else None,
        "source": loaded.source if loaded else None,
        "loaded_at": _active.loaded_at,
        "last_error": _active.error,
    }


def forget() -> None:
    """Drop the active rules (tests; a fresh process starts like this)."""
    global _active
    _active = _Active()
