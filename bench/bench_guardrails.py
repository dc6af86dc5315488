"""Guardrails benchmark: offline checks per second and p99 per reply (entities, people, classifier).

    uv run python bench/bench_guardrails.py [--replies 5000]

One core. Target: offline layers p99 <= 10 ms per reply.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replies", type=int, default=5000)
    args = parser.parse_args()
    os.environ.setdefault(
        "TRAZA_MODEL_CACHE", str(Path(tempfile.gettempdir()) / "traza-bench-models")
    )
    os.environ.pop("TRAZA_CONFIG_DIR", None)
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    except (AttributeError, OSError):
        pass
    from traza.decisions import guardrails

    started = time.perf_counter()
    model = guardrails.reply_model()
    print(f"reply classifier {model.version} ready in {time.perf_counter() - started:.2f} s")
    people = guardrails.People(
        own_names=frozenset({"Ana Pérez"}),
        own_emails=frozenset({"ana@example.com"}),
        other_names=frozenset({"María López", "Juan Gómez"}),
        other_phones=frozenset({"5215598765432"}),
    )
    texts = [e.text for e in guardrails.read(guardrails.builtin_files())]
    texts = (texts * (args.replies // len(texts) + 1))[: args.replies]
    guardrails.check_reply(texts[0], people=people)
    latencies = []
    blocked = 0
    began = time.perf_counter()
    for text in texts:
        t = time.perf_counter()
        blocked += not guardrails.check_reply(text, people=people).allowed
        latencies.append((time.perf_counter() - t) * 1000)
    wall = time.perf_counter() - began
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    print(
        f"checks/s            {len(texts) / wall:8.0f}"
        f" (one core, {len(texts)} replies, {blocked} blocked)"
    )
    print(
        f"latency per reply   p50 {p(0.5):.2f} ms  p99 {p(0.99):.2f} ms  max {latencies[-1]:.2f} ms"
    )


if __name__ == "__main__":
    main()
