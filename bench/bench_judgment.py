"""Judgment benchmark: training time, model size, load time, RSS added, latency per message.

    uv run python bench/bench_judgment.py [--messages 5000]

Runs on one core (the OpenBLAS variables of the machine are left alone). Targets:
classification p99 <= 5 ms, model load <= 1 s, <= 150 MB RSS added to a traza process.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run in a fresh process: what a traza worker has loaded anyway, then the judgment layer.
CHILD = """
import json, os, sys, time
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
import fastapi, langgraph.graph, procrastinate, psycopg, sqlalchemy, traza.settings
base = rss()
started = time.perf_counter()
from traza.decisions import judgment
from traza.decisions.classifier import classify_turn
judgment.reload()
classify_turn(["hola"])
print(json.dumps({"base": base, "added": rss() - base, "seconds": time.perf_counter() - started,
                  "sklearn": "sklearn" in sys.modules}))
"""


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
    from traza.decisions import judgment
    from traza.decisions.classifier import classify_turn

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
    child = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True
    )
    fresh = json.loads(child.stdout.strip().splitlines()[-1])
    judgment.reload()
    classify_turn(["hola"])
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

    def p(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    features = model.weights.shape[0]
    print(f"model {model.version}: {model.trained_on} examples, {features:,} features")
    print(f"training            {trained:6.2f} s (cold, one core)")
    print(f"model on disk       {size / 2**20:6.1f} MB")
    print(f"load from cache     {loaded * 1000:6.0f} ms")
    print(
        f"fresh process: baseline {fresh['base']:.0f} MB, judgment adds {fresh['added']:.0f} MB"
        f" (model, language detector, imports), ready in {fresh['seconds']:.2f} s;"
        f" scikit-learn imported: {fresh['sklearn']}"
    )
    print(f"classifications/s   {len(texts) / wall:8.0f} (one core, {len(texts)} messages)")
    print(
        f"latency per message p50 {p(0.5):.2f} ms  p99 {p(0.99):.2f} ms  max {latencies[-1]:.2f} ms"
    )


if __name__ == "__main__":
    main()
