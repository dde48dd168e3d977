"""Write the table of architectures into docs/models.md: what pyintro does with a tiny model of
each architecture in tests/arch_specs.json, found by running the checks of
tests/test_architectures.py on it now (not by reading the expected STATUS there).

    python tools/arch_table.py            # rewrites the block between docs/models.md's markers
    python tools/arch_table.py --print    # prints the table only

The table is sorted by status then name. An architecture whose observed status differs from
test_architectures.STATUS is reported on stderr and makes the exit status 1 (the file is then
left as it was).
"""

from __future__ import annotations

import logging
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "models.md"
START, END = "<!-- arch_table -->", "<!-- /arch_table -->"
sys.path.insert(0, str(ROOT / "tests"))
import test_architectures as checks  # noqa: E402
from tiny_models import specs  # noqa: E402

# Sort order of the observed statuses (both kinds of refusal sort together, by their reason).
ORDER = {"supported": 0, "refused at load": 1, "refused at hook": 1, "not loadable": 2, "fails": 3}


def llama_cpp_version() -> str:
    from importlib.metadata import version

    return version("llama-cpp-python")


def short(message: str) -> str:
    """A message without the file path pyintro appends (": '/tmp/.../x.gguf'") and the table-
    breaking pipes and newlines."""
    message = re.sub(r":? ?'[^']*\.gguf'", "", message)
    return " ".join(message.replace("|", "/").split())


def first_clause(message: str) -> str:
    """The message up to its first ';', without "architecture 'X' " (the table's first column)."""
    return re.sub(r"architecture '[^']*' ", "", short(message).split(";")[0])


def reason(arch: str, notes: str) -> str:
    """The why of a refusal: STATUS's phrase when the message has it, else the message's start."""
    expected = checks.STATUS.get(arch, "")
    phrase = expected.split(": ", 1)[1] if ": " in expected else ""
    if phrase and phrase in notes:
        return phrase
    return short(notes.split(": ", 1)[-1])[:60]


def row(arch: str, status: str, notes: str) -> tuple[str, str]:
    """(status column, notes column)."""
    if status == "supported":
        return "supported", notes
    if status == "refused at load":
        return f"refused ({reason(arch, notes)})", f"Model.load raises {first_clause(notes)}"
    if status == "refused at hook":
        return f"refused ({reason(arch, notes)})", f"loads; capture and injection raise {first_clause(notes)}"
    if status == "not loadable":
        return f"not loadable by llama.cpp {llama_cpp_version()} ({first_clause(notes)[:80]})", short(notes)
    return "fails a check", short(notes)


def main() -> int:
    # llama-cpp-python's log callback (installed when tests/_reference.py imports it) prints
    # every llama.cpp log line to stderr; keep its errors only.
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    rows, mismatches = [], []
    with tempfile.TemporaryDirectory() as folder:
        for arch in sorted(specs()):
            status, notes = checks.observe(arch, folder)
            expected = checks.STATUS.get(arch, "(none)").split(":")[0]
            if status != expected:
                mismatches.append(f"{arch}: observed {status!r}, STATUS says {expected!r}: {short(notes)}")
            rows.append((ORDER[status], *row(arch, status, notes), arch))
    lines = ["| architecture | status | notes |", "|---|---|---|"]
    for _, status, notes, arch in sorted(rows, key=lambda r: (r[0], r[1], r[3])):
        lines.append(f"| {arch} | {status} | {notes} |")
    table = "\n".join(lines)
    for line in mismatches:
        print(line, file=sys.stderr)
    if "--print" in sys.argv[1:] or mismatches:
        print(table)
        return 1 if mismatches else 0
    text = DOC.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{table}\n{END}{tail}")
    print(f"wrote {len(rows)} architectures into {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
