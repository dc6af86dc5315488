"""Read a rules file and report every problem with the file, the line and what is wrong."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from traza.rules.schema import Rules, references

DEFAULTS = Path(__file__).with_name("defaults.yaml")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a rules file."""

    file: str
    line: int | None
    where: str
    message: str

    def __str__(self) -> str:
        """`rules.yaml:12: teams.support.hours.timezone: unknown time zone 'Mars/Base'`."""
        at = f"{self.file}:{self.line}" if self.line else self.file
        return f"{at}: {self.where}: {self.message}" if self.where else f"{at}: {self.message}"


class RulesError(ValueError):
    """A rules file that cannot be used; `problems` lists what is wrong and where."""

    def __init__(self, problems: list[Problem]) -> None:
        """Keep every problem; the message lists them one per line."""
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True, slots=True)
class LoadedRules:
    """Valid rules with their version (a hash of the file's bytes) and where they came from."""

    rules: Rules
    version: str
    source: str
    text: str


def _line(node: yaml.Node | None, path: tuple[Any, ...]) -> int | None:
    """The line of the deepest node of `path` that exists in the YAML tree."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if str(key.value) == str(part):
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _where(path: tuple[Any, ...]) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")


M = TypeVar("M", bound=BaseModel)


def parse_model(text: str, *, source: str, model: type[M]) -> tuple[M, yaml.Node | None]:
    """Validate YAML text against `model`; raise `RulesError` naming each problem's line.

    Shared by every configuration file (rules, follow-up agents).
    """
    name = source
    try:
        tree = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise RulesError([Problem(name, line, "", f"not valid YAML: {problem}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RulesError([Problem(name, 1, "", "the rules file must be a mapping of sections")])
    try:
        return model.model_validate(data), tree
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown field (check the spelling; see README 'Writing rules')"
            problems.append(Problem(name, _line(tree, loc), _where(loc), message))
        raise RulesError(problems) from None


def problems_at(
    tree: yaml.Node | None, source: str, found: list[tuple[tuple[Any, ...], str]]
) -> RulesError:
    """A `RulesError` for cross-reference problems found after validation."""
    return RulesError([Problem(source, _line(tree, p), _where(p), m) for p, m in found])


def parse(text: str, *, source: str, known_teams: set[str] | None = None) -> LoadedRules:
    """Validate rules text; raise `RulesError` naming each problem's line."""
    rules, tree = parse_model(text, source=source, model=Rules)
    refs = references(rules, known_teams)
    if refs:
        raise problems_at(tree, source, refs)
    version = hashlib.sha256(text.encode()).hexdigest()[:12]
    return LoadedRules(rules=rules, version=version, source=source, text=text)


def load_file(path: Path, *, known_teams: set[str] | None = None) -> LoadedRules:
    """Read and validate a rules file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError([Problem(str(path), None, "", f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise RulesError([Problem(str(path), None, "", "not UTF-8 text")]) from None
    return parse(text, source=str(path), known_teams=known_teams)


@lru_cache(maxsize=1)
def defaults() -> LoadedRules:
    """The built-in rules used when `TRAZA_CONFIG_DIR` has no rules file."""
    return parse(DEFAULTS.read_text(encoding="utf-8"), source="built-in defaults")
