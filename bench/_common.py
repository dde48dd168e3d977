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

RESULTS = Path(__file__).parent / "results"


def interleaved(fns: dict, repeats: int = 3, warmup: int = 1, self_timed: bool = False) -> dict:
    """Median wall time (s) of each callable in ``fns``, timed in rotation (A B C A B C ...)
    after ``warmup`` untimed rounds, so that a change in the machine's load hits every variant
    alike. ``self_timed``: each callable returns the seconds that count itself (so that it can
    first do untimed set-up, such as caching a prompt prefix). Returns {name: {"median": s,
    "times": [s, ...]}}."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            took = fn()
            times[k].append(float(took) if self_timed else time.perf_counter() - start)
    return {k: {"median": statistics.median(v), "times": [round(t, 4) for t in v]} for k, v in times.items()}


class OtherLoad:
    """How busy the rest of the machine was from creation to ``stop()``: ``cores`` is the CPU time that
    other processes (and the hypervisor's steal) used, in cores on average, from /proc/stat's
    busy time minus this process's own. 0 on a quiet machine; NaN where /proc/stat is missing."""

    def __init__(self):  # starts measuring
        self.cores = float("nan")
        self._start = (time.monotonic(), _busy_seconds(), _own_seconds())

    def stop(self) -> float:
        t0, busy0, own0 = self._start
        busy1 = _busy_seconds()
        if busy0 is not None and busy1 is not None:
            self.cores = max(0.0, ((busy1 - busy0) - (_own_seconds() - own0)) / (time.monotonic() - t0))
        return self.cores

    def sentence(self, n_cores: int) -> str:
        if self.cores != self.cores:
            return "Other processes' load was not measured."
        text = f"Other processes used {self.cores:.2f} of the {n_cores} cores on average during the run"
        return text + ("." if self.cores < 0.2 else " (a shared machine: absolute times are noisy; "
                       "the ratios come from variants timed in rotation).")


def _busy_seconds():
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


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


def report(name: str, result: dict, markdown: str, readme=None, section=None, md: bool = False, extra=()) -> Path:
    """What every script ends with: the result as bench/results/NAME.json (and the table as NAME.md
    with ``md``), the table printed, and with ``readme`` the table written into that file's
    ``bench:SECTION`` block (SECTION defaults to NAME). ``extra``: other files it wrote, to list."""
    written = [write_json(name, result)]
    if md:
        written.append(RESULTS / f"{name}.md")
        written[-1].write_text(markdown.rstrip() + "\n")
    print(markdown)
    print("\nwrote " + " and ".join(str(p) for p in written + list(extra)))
    if readme:
        update_readme(readme, section or name, markdown)
    return written[0]


def update_readme(readme: Path, section: str, markdown: str) -> None:
    """Replace the text between ``<!-- bench:SECTION -->`` and ``<!-- /bench:SECTION -->``."""
    start, end = f"<!-- bench:{section} -->", f"<!-- /bench:{section} -->"
    text = readme.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{readme} has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{markdown.rstrip()}\n{end}{tail}")


def meminfo() -> dict:
    """The machine's memory from /proc/meminfo, in bytes: {"total", "available"} (NaN where
    /proc/meminfo is missing)."""
    out = {"total": float("nan"), "available": float("nan")}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    out["total" if key == "MemTotal" else "available"] = float(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def shown(path) -> str:
    """``path`` relative to the current folder when it is inside it (for "Reproduce:" lines)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def stopwatch(fn, *args, **kw) -> float:
    """Seconds that ``fn(*args, **kw)`` took."""
    start = time.perf_counter()
    fn(*args, **kw)
    return time.perf_counter() - start
