"""Judgment: the trained model that reads a candidate's turn, and the data it learns from.

The labelled examples ship with the package (`traza/decisions/data/judgment/*.jsonl`, card
in `docs/judgment-dataset.md`); an operator adds their own in
`$TRAZA_CONFIG_DIR/judgment/*.jsonl`. The model (see `textmodel`) has one calibrated head
per decision signal and one intent head; its version is a hash of every example file and
the parameters, so new examples mean a new version, rebuilt automatically and recorded
with every classification. A bad examples file never replaces a working model: the
previous version stays active and the problem (file and line) is shown and logged.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from traza.decisions import textmodel
from traza.decisions.textmodel import DatasetError, Example, Params, TextModel
from traza.rules.schema import HEADS
from traza.settings import get_settings

log = logging.getLogger(__name__)

ESCALATION = ("wants_human", "negotiation", "frustration", "out_of_scope")
"""Heads that send a turn to a human when they fire."""
ESCALATE = "escalate"
"""The stacked head: how likely this turn needs a human, read off all the other heads."""
SIGNALS = tuple(h for h in HEADS if h != ESCALATE)
"""Every labelled binary head, in the order they are reported (named in the rules schema)."""
INTENT_LABELS = (
    "greeting",
    "thanks",
    "goodbye",
    "application_status",
    "interview",
    "job_info",
    "provide_info",
)
LABELS = (*SIGNALS, *INTENT_LABELS)
VARIETIES = ("es-MX", "es-AR", "es-ES", "es-CO", "en", "pt-BR", "es-en")
DATA_DIR = Path(__file__).resolve().parent / "data" / "judgment"
PARAMS = Params(
    heads=SIGNALS,
    intents=INTENT_LABELS,
    stack=(ESCALATE, ESCALATION),
    languages=True,
    c=16.0,
    min_df=1,
)
CHECK_EVERY_SECONDS = 2.0
NAME = "judgment"


def builtin_files() -> list[Path]:
    """The shipped example files."""
    return sorted(DATA_DIR.glob("*.jsonl"))


def operator_files() -> list[Path]:
    """The operator's own example files, `$TRAZA_CONFIG_DIR/judgment/*.jsonl`."""
    folder = get_settings().traza_config_dir
    if folder is None or not (folder / "judgment").is_dir():
        return []
    return sorted((folder / "judgment").glob("*.jsonl"))


def read(files: list[Path], *, operator: bool = False) -> list[Example]:
    """Every example of the files; all problems of all files are raised together."""
    examples: list[Example] = []
    problems: list[str] = []
    for path in files:
        try:
            examples += textmodel.read_examples(
                path,
                vocabulary=LABELS,
                varieties=VARIETIES,
                require_variety=not operator,
            )
        except DatasetError as exc:
            problems += exc.problems
    if problems:
        raise DatasetError(problems)
    return examples


def dataset(*, with_operator: bool = True) -> tuple[list[Example], list[Example], list[Path]]:
    """Shipped and operator examples, and the files they came from."""
    builtin = builtin_files()
    own = operator_files() if with_operator else []
    return read(builtin), read(own, operator=True), builtin + own


def build(*, split: str = "all", with_operator: bool = True) -> TextModel:
    """The model for the examples (from the cache when this version was built before).

    `split="train"` leaves the held-out families of the shipped data out (for `eval`);
    operator examples always train.
    """
    shipped, own, files = dataset(with_operator=with_operator)
    digest = textmodel.files_digest(files) + f":{split}"
    version = textmodel.version_of(NAME if split == "all" else f"{NAME}-{split}", PARAMS, digest)
    examples = shipped if split == "all" else textmodel.split(shipped)[0]
    examples = [*examples, *own]

    def fit() -> TextModel:
        log.info("training %s on %d examples", version, len(examples))
        return textmodel.train(examples, PARAMS, name=NAME, version=version)

    return textmodel.cached(get_settings().model_cache, name=NAME, version=version, build=fit)


@dataclass
class _Active:
    model: TextModel | None = None
    stamp: tuple[tuple[str, int, int], ...] | None = None
    checked: float = 0.0
    loaded_at: datetime | None = None
    error: str | None = None
    rebuilding: bool = False


_active = _Active()
_lock = threading.Lock()


def _stamp() -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and mtimes of the operator's files (cheap to compare)."""
    out = []
    for path in operator_files():
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((str(path), st.st_size, st.st_mtime_ns))
    return tuple(out)


def reload() -> TextModel:
    """Build (or load) the model for today's examples and make it active.

    Raises `DatasetError` when an examples file is bad; the previous model stays active.
    """
    with _lock:
        stamp = _stamp()
        try:
            model = build()
        except DatasetError as exc:
            _active.error, _active.stamp, _active.checked = str(exc), stamp, time.monotonic()
            raise
        changed = _active.model is None or _active.model.version != model.version
        _active.model, _active.stamp, _active.checked, _active.error = (
            model,
            stamp,
            time.monotonic(),
            None,
        )
        if changed:
            _active.loaded_at = datetime.now(UTC)
            log.info("judgment model %s active (%d examples)", model.version, model.trained_on)
        return model


def _reload_in_background() -> None:
    try:
        reload()
    except DatasetError as exc:
        kept = _active.model.version if _active.model else "none"
        log.error("judgment examples refused, keeping %s:\n%s", kept, exc)
    finally:
        _active.rebuilding = False


def current() -> TextModel:
    """The active model; changed operator examples are picked up here (checked every 2 s).

    A change is built in a background thread while the previous model keeps deciding, so
    a turn never waits for training.
    """
    if _active.model is None:
        return reload()
    if time.monotonic() - _active.checked >= CHECK_EVERY_SECONDS and not _active.rebuilding:
        _active.checked = time.monotonic()
        if _stamp() != _active.stamp:
            _active.rebuilding = True
            threading.Thread(target=_reload_in_background, daemon=True).start()
    return _active.model


def status() -> dict[str, Any]:
    """The active model's version, size of its training data and the last refusal."""
    model = _active.model
    return {
        "version": model.version if model else None,
        "trained_on": model.trained_on if model else None,
        "loaded_at": _active.loaded_at,
        "last_error": _active.error,
    }


def forget() -> None:
    """Drop the active model (tests; a fresh process starts like this)."""
    global _active
    _active = _Active()
