"""Shared helpers for the benchmark scripts: timing, machine description, reports."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import time
from importlib.metadata import version
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).parent / "results"


def median_time(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "cpu": cpu,
        "cores": cores,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "llama_cpp_python": version("llama-cpp-python"),
        "date": _dt.date.today().isoformat(),
    }


def machine_line(m: dict) -> str:
    return f"{m['cpu']}, {m['cores']} cores, {m['system']}, llama-cpp-python {m['llama_cpp_python']}, {m['date']}"


def write_json(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def update_readme(readme: Path, section: str, markdown: str) -> None:
    """Replace the text between ``<!-- bench:SECTION -->`` and ``<!-- /bench:SECTION -->``."""
    start, end = f"<!-- bench:{section} -->", f"<!-- /bench:{section} -->"
    text = readme.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{readme} has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{markdown.rstrip()}\n{end}{tail}")
