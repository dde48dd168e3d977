"""Every experiment's ``--quick`` on the default model, end to end as a user runs it: wall time
with 2 threads, each from an empty concept cache (so the extraction of its vectors is included),
beside the ``--plan`` estimate made on the same machine just before.

    python bench/quick_times.py [--threads 2] [--model smollm2] [--readme docs/performance.md]

Each command runs in its own process, one after the other; the table goes to
bench/results/quick_times.json (and with --readme into that file's ``bench:quick_times`` block).
Targets: every experiment under 3 minutes on an idle 2-core machine; the plan within a factor of
1.5 of the measured time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import OtherLoad, machine, machine_line, report  # noqa: E402

EXPERIMENTS = ("run", "detect", "thoughts", "prefill", "control")


def pyintro(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyintro.cli", *args], env=env, capture_output=True, text=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=None, help="a model path or alias (default: the default model)")
    ap.add_argument("--only", default=",".join(EXPERIMENTS), help="comma list of experiments")
    ap.add_argument("--readme", type=Path, help="update this file's bench:quick_times section")
    args = ap.parse_args()
    m = machine()
    other = OtherLoad()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            env = dict(os.environ, PYINTRO_CACHE=str(Path(tmp) / f"cache-{name}"), PYINTRO_THREADS=str(args.threads))
            if args.model:
                env["PYINTRO_MODEL"] = args.model
            plan = pyintro([name, "--quick", "--plan", "--json"], env)
            if plan.returncode:
                raise SystemExit(f"{name} --plan failed: {plan.stderr.strip()}")
            estimate = json.loads(plan.stdout)
            out = Path(tmp) / name
            start = time.perf_counter()
            done = pyintro([name, "--quick", "--out", str(out)], env)
            wall = time.perf_counter() - start
            if done.returncode:
                raise SystemExit(f"{name} --quick failed: {done.stderr.strip()}")
            summary = json.loads((out / "summary.json").read_text())
            results.append({"experiment": name, "wall_s": round(wall, 1), "elapsed_s": summary.get("elapsed_s"),
                            "plan_s": round(estimate["seconds"], 1), "rows": estimate["rows"],
                            "token_rows": estimate["token_rows"], "ratio": round(estimate["seconds"] / wall, 2)})
            print(f"{name}: {wall:.0f} s (plan {estimate['seconds']:.0f} s)", file=sys.stderr, flush=True)
    other.stop()
    lines = [f"`--quick` on the default model, {args.threads} threads, each from an empty concept cache (extraction "
             f"included), run as the CLI runs it ({machine_line(m)}). " + other.sentence(m["cores"]),
             "", "| experiment | wall time | `--plan` estimate | estimate / wall | result rows | token rows |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| `pyintro {r['experiment']} --quick` | {r['wall_s']:.0f} s | {r['plan_s']:.0f} s | {r['ratio']:.2f} | "
              f"{r['rows']} | {r['token_rows']:,} |" for r in results]
    lines += ["", "Reproduce: `python bench/quick_times.py --readme docs/performance.md`"]
    report("quick_times", {"machine": m, "other_load_cores": other.cores, "results": results}, "\n".join(lines),
           args.readme)


if __name__ == "__main__":
    main()
