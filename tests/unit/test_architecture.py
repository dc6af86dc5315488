"""The layering holds: no import cycle between packages, one home for kinds, locks and SQL."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import grimp

from traza.db import locks
from traza.trace import kinds

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("traza", "graphs", "tools", "prompts", "api")


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "traza" and len(parts) > 1 else parts[0]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_packages() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    edges: dict[str, set[str]] = defaultdict(set)
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = _package(module), _package(imported)
            if a != b:
                edges[a].add(b)
                edges.setdefault(b, set())
    assert _cycles(edges) == []


def _product_files() -> list[Path]:
    files = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                files.append(path)
    return files


def test_event_kinds_are_written_with_constants() -> None:
    literal = re.compile(r"\bkind\s*=\s*\"[a-z_]+\.[a-z_]+\"")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in _product_files()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert offenders == []


def test_kinds_spelled_in_sql_are_known_kinds() -> None:
    # SQL filters on kinds by spelling them: each must be a kind traza writes.
    spelled: set[str] = set()
    for path in _product_files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if "trace_events" in node.value or "kind" in node.value:
                    spelled |= set(re.findall(r"'([a-z_]+\.[a-z_]+)'", node.value))
    unknown = sorted(k for k in spelled if k not in kinds.ALL)
    assert unknown == []


def test_migrations_use_the_registered_lock_namespaces() -> None:
    versions = ROOT / "traza" / "migrations" / "versions"
    chain = (versions / "0004_audit_chain.py").read_text()
    counters = (versions / "0009_metric_counters.py").read_text()
    assert f"pg_advisory_xact_lock({locks.AUDIT_CHAIN}," in chain
    assert f"pg_try_advisory_xact_lock({locks.METRIC_COMPACTION}, 0)" in counters


def test_no_bare_advisory_lock_numbers_outside_the_registry() -> None:
    bare = re.compile(r"pg_(try_)?advisory_(xact_)?lock\(\s*\d")
    offenders = [
        str(path.relative_to(ROOT))
        for path in _product_files()
        if path.name != "locks.py" and bare.search(path.read_text())
    ]
    assert offenders == []


def test_the_cycle_check_finds_a_cycle() -> None:
    edges: dict[str, set[str]] = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]


def test_the_architecture_doc_names_every_package() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    folders = [
        str(path.parent.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).glob("*/__init__.py")
        if path.parent.name not in ("migrations", "__pycache__")
    ]
    missing = [f for f in folders if f"`{f}/`" not in doc and f"{f}/" not in doc]
    assert missing == []


# Entry points, services, the graph and the tools ask a repository; they write no SQL.
ABOVE_THE_DOMAIN = ("api", "traza/cli", "traza/worker", "traza/services", "graphs", "tools")
STATEMENTS = {"text", "select", "insert", "update", "delete"}
SQL_TEXT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\s")
SQL_ALLOWED = {
    "api/routes/health.py",  # the liveness probe's SELECT 1
    "traza/cli/common.py",  # the start-up team check on a plain psycopg connection, no engine yet
    "traza/worker/run.py",  # procrastinate's own tables, through procrastinate's connector
}


def _sql_in(path: Path) -> list[int]:
    """Lines that import a SQLAlchemy statement builder or spell a SQL statement."""
    lines: list[int] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            lines += [node.lineno for alias in node.names if alias.name in STATEMENTS]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if SQL_TEXT.match(node.value):
                lines.append(node.lineno)
    return lines


def test_no_sql_above_the_domain_layer() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for folder in ABOVE_THE_DOMAIN
        for path in sorted((ROOT / folder).rglob("*.py"))
        if str(path.relative_to(ROOT)) not in SQL_ALLOWED
        for line in _sql_in(path)
    ]
    assert offenders == []
