"""Write the README's result sentences from experiments' summary.json files, so that the README
claims what the verdicts say and nothing stronger.

    python tools/readme_results.py --readme README.md RUN_DIR... [--label smollm2=... --label gemma=...]

Each folder is an experiment's output folder (``pyintro run|detect|thoughts|prefill|control
--quick --out DIR``); its summary's ``verdict`` (with the model file, the grid and the machine's
CPU features) goes into the README block ``<!-- results:EXPERIMENT -->`` ... ``<!-- /results:EXPERIMENT -->``,
one bullet per model.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path


def sentence(summary: dict) -> str:
    prov = summary.get("provenance") or {}
    model = Path(prov.get("model_path", "")).name or summary.get("model", "?")
    fmt = (prov.get("prompt_format") or {}).get("kind", "")
    cpu = " ".join(f.split("=")[0].strip() for f in ((prov.get("numerics") or {}).get("system_info", "")).split("|")
                   if f.strip().endswith("= 1") and f.split("=")[0].strip().startswith("AVX"))
    verdict = summary.get("verdict") or "; ".join(summary.get("report", [])[:2])
    warn = "".join(f" Warning: {w}." for w in summary.get("warnings", []))
    return f"- **{model}** ({fmt} prompts, `--quick`, {cpu or 'CPU'} build): {verdict}.{warn}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--readme", type=Path, required=True)
    args = ap.parse_args()
    blocks: dict[str, list[str]] = defaultdict(list)
    for folder in args.folders:
        summary = json.loads((folder / "summary.json").read_text())
        meta = json.loads((folder / "results.csv.json").read_text())
        blocks[meta["experiment"]].append(sentence(summary))
    text = args.readme.read_text()
    for name, lines in blocks.items():
        start, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
        if start not in text:
            raise SystemExit(f"{args.readme} has no {start} block")
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), start + "\n" + "\n".join(lines) + "\n" + end, text,
                      flags=re.S)
    args.readme.write_text(text)
    print(f"wrote {', '.join(blocks)} into {args.readme}")


if __name__ == "__main__":
    main()
