"""The device tests' measurements (PYINTRO_DEVICE_REPORT files, tests/_device.py) as markdown.

    python tools/device_report.py REPORT.jsonl [...]

One section per file (one placement, PYINTRO_TEST_GPU_LAYERS), one line per measurement.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def short(value, width: int = 400) -> str:
    text = json.dumps(value)
    return text if len(text) <= width else text[:width] + " ..."


def main(argv: list[str]) -> int:
    for name in argv:
        path = Path(name)
        if not path.exists():
            continue
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not lines:
            continue
        head = lines[0]
        print(f"### n_gpu_layers={head['gpu_layers']}, {head['model']}, {', '.join(head['devices'])}")
        print()
        for line in lines:
            print(f"- {line['key']}: `{short(line['value'])}`")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
