"""Judgment benchmark: training time, model size, load time, RSS added, latency per message.

    uv run python bench/bench_judgment.py [--messages 5000]

Runs on one core (the OpenBLAS variables of the machine are left alone). Targets:
classification p99 <= 5 ms, model load <= 1 s, <= 150 MB RSS added.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path


def rss_mb() -> float:
    """Resident set size now, from /proc (ru_maxrss is the peak)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def loaded_rss(cache: Path) -> None:
    """In a fresh process: RSS of a service baseline, then of the cached model and detector."""
    import subprocess
    import sys

    code = (
        "import os,time;os.environ['TRAZA_MODEL_CACHE']=%r\n"
        "def rss():\n with open('/proc/self/statm') as f: return int(f.read().split()[1])"
        "*os.sysconf('SC_PAGE_SIZE')/2**20\n"
        "import fastapi,langgraph.graph,procrastinate,psycopg,sqlalchemy,traza.settings\n"
        "base=rss();t=time.perf_counter()\n"
        "from traza.decisions import judgment\nfrom traza.decisions.classifier import classify_turn\n"
        "judgment.reload();classify_turn(['hola'])\n"
        "import sys;print(f'{base:.0f} {rss()-base:.0f} {time.perf_counter()-t:.2f} "
        '{"sklearn" in sys.modules}\')'
    ) % str(cache)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    base, added, seconds, sklearn = out.stdout.split()
    print(
        f"fresh process: service baseline {base} MB, +judgment (model, language detector,"
        f" imports) {added} MB, ready in {seconds} s; scikit-learn imported: {sklearn}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="traza-bench-judgment-"))
    os.environ["TRAZA_MODEL_CACHE"] = str(cache)
    os.environ.pop("TRAZA_CONFIG_DIR", None)
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    except (AttributeError, OSError):
        pass
    bare = rss_mb()
    # What a traza process loads anyway, judgment or not: the baseline "added" is counted from.
    import fastapi  # noqa: F401
    import langgraph.graph  # noqa: F401
    import procrastinate  # noqa: F401
    import psycopg  # noqa: F401
    import sqlalchemy  # noqa: F401

    import traza.settings  # noqa: F401

    base = rss_mb()
    from traza.decisions import judgment
    from traza.decisions.classifier import classify_turn

    imported = rss_mb()
    started = time.perf_counter()
    model = judgment.build()
    trained = time.perf_counter() - started
    size = sum(p.stat().st_size for p in cache.glob("*.pkl"))
    judgment.forget()
    del model
    gc.collect()
    started = time.perf_counter()
    model = judgment.build()  # from the cache, as a restarted process does
    loaded = time.perf_counter() - started
    judgment.reload()
    classify_turn(["hola"])  # language models load on first use
    ready = rss_mb()
    shipped, _, _ = judgment.dataset(with_operator=False)
    texts = [e.text for e in shipped]
    texts = (texts * (args.messages // len(texts) + 1))[: args.messages]
    latencies = []
    began = time.perf_counter()
    for text in texts:
        t = time.perf_counter()
        classify_turn([text])
        latencies.append((time.perf_counter() - t) * 1000)
    wall = time.perf_counter() - began
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    print(
        f"model {model.version}: {model.trained_on} examples, {model.weights.shape[0]:,} features"
    )
    print(f"training            {trained:6.2f} s (cold, one core)")
    print(f"model on disk       {size / 2**20:6.1f} MB")
    print(f"load from cache     {loaded * 1000:6.0f} ms")
    print(
        f"RSS: python {bare:.0f} MB, service baseline {base:.0f} MB, "
        f"+judgment imports (scikit-learn, scipy, lingua) {imported - base:.0f} MB, "
        f"+model and language detector {ready - imported:.0f} MB "
        f"(total added {ready - base:.0f} MB; peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)"
    )
    loaded_rss(cache)
    print(f"classifications/s   {len(texts) / wall:8.0f} (one core, {len(texts)} messages)")
    print(
        f"latency per message p50 {p(0.5):.2f} ms  p99 {p(0.99):.2f} ms  max {latencies[-1]:.2f} ms"
    )
    print(f"mean                {statistics.mean(latencies):.2f} ms")


if __name__ == "__main__":
    main()
