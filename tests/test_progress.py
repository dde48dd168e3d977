"""pyintro.progress without a model: progress lines for logs, and Ctrl-C acknowledged at once
and honoured at the end of the chunk in flight (subprocesses sent SIGINT, on a fake native
workload: hashlib's PBKDF2, which holds no GIL and ignores signals for its whole length)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pyintro import progress
from pyintro.progress import Progress, SigintAtChunkEnd

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def fake_clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(progress, "_clock", c)
    return c


def test_log_lines_are_throttled_with_rate_and_eta(fake_clock, capsys):
    """100 chunks of 0.5 s: a first line, then one line per LOG_INTERVAL (5 s), and the last."""
    with Progress("log", 200, "detect", "point") as p:
        for _ in range(100):
            fake_clock.now += 0.5
            p.advance(2)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "detect: 0/200 points"
    assert lines[1] == "detect: 20/200 points, 4.00/s, ETA 0:45"
    assert lines[2] == "detect: 40/200 points, 4.00/s, ETA 0:40"
    assert lines[-1] == "detect: 200/200 points, 4.00/s, done in 0:50"
    assert len(lines) == 1 + 10  # 50 s of work: one line per 5 s, the last among them


def test_log_line_where_the_work_stopped(fake_clock, capsys):
    with pytest.raises(KeyboardInterrupt):
        with Progress("log", 10, "concepts", "word") as p:
            fake_clock.now += 1.0
            p.advance(1)  # 1 s after the first line: not written yet
            raise KeyboardInterrupt
    assert capsys.readouterr().err.splitlines() == ["concepts: 0/10 words", "concepts: 1/10 words, 1.00/s, ETA 0:09"]


def test_progress_values(capsys, monkeypatch):
    for value in (None, False):
        with Progress(value, 5, "x") as p:  # stderr is not a terminal under pytest
            p.advance(5)
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="progress must be None, True, False, 'log' or a callable"):
        Progress("bar", 5, "x")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with Progress("log", 5, "x") as p:  # a terminal: a tqdm bar, not log lines
        assert p._bar is not None
        p.advance(5)
    assert "x: 5/5 points" not in capsys.readouterr().err


def test_clock_and_chunk_estimate(fake_clock):
    assert [progress.clock(s) for s in (0, 59.6, 61, 3599, 3600, 7384)] == [
        "0:00", "1:00", "1:01", "59:59", "1:00:00", "2:03:04"]
    p = Progress(False, 10, "x")
    assert p.chunk_seconds_left() is None  # no chunk timed yet
    fake_clock.now += 8.0
    p.advance(1)
    fake_clock.now += 8.0
    p.advance(1)  # chunks of 8 s
    fake_clock.now += 3.0
    assert p.chunk_seconds_left() == 5
    fake_clock.now += 6.0
    assert p.chunk_seconds_left() is None  # overdue: no honest estimate


def test_sigint_handler_is_restored_and_left_alone_elsewhere():
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a run from a terminal
    try:
        with SigintAtChunkEnd() as s:
            assert signal.getsignal(signal.SIGINT) == s._handler
            with SigintAtChunkEnd() as inner:  # nested: the outer one keeps SIGINT
                assert signal.getsignal(signal.SIGINT) == s._handler and inner._watcher is None
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.set_wakeup_fd(-1) == -1  # the wakeup fd was given back
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a program that ignores SIGINT keeps ignoring it
        with SigintAtChunkEnd():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def _default_sigint():
    """SIGINT at its default in the child, even when a shell started this run in the background
    (which ignores SIGINT, and Python then installs no handler of its own)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# -- subprocesses sent SIGINT ---------------------------------------------------------------

WORKLOAD = textwrap.dedent('''
    import hashlib, sys, time
    from pathlib import Path
    from pyintro.progress import Interrupted
    from pyintro.results import Table, read_rows, run_chunks

    t = time.perf_counter()
    hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", 50000)
    per_s = 50000 / (time.perf_counter() - t)

    def native(seconds):  # one C call without the GIL, deaf to signals until it ends
        hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", max(1, int(seconds * per_s)))

    def compute(chunk):
        native(seconds[chunk[0]])
        print(f"chunk {chunk[0]} computed", file=sys.stderr, flush=True)
        return [{"k": chunk[0], "v": 0.5}]

    out, seconds = Path(sys.argv[1]), [float(s) for s in sys.argv[2].split(",")]
    parse = lambda r: {"k": int(r["k"]), "v": float(r["v"])}
    with Table(out, ["k", "v"], lambda r: (r["k"],), parse, {}, [], resume=False) as table:
        try:
            run_chunks(table, [[i] for i in range(len(seconds))], compute, lambda c: [(c[0],)],
                       progress="log", desc="fake", unit="chunk")
        except Interrupted as e:
            print(f"STOPPED {e.done} of {e.total}", file=sys.stderr, flush=True)
            sys.exit(130)
    print("FINISHED", file=sys.stderr, flush=True)
''')


def _start(tmp_path, seconds):
    script = tmp_path / "workload.py"
    script.write_text(WORKLOAD)
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "rows.csv"), ",".join(map(str, seconds))],
                            stderr=subprocess.PIPE, text=True, bufsize=1, preexec_fn=_default_sigint)


def _wait_for(proc, text, seen, timeout=120.0):
    """Read stderr lines into ``seen`` until one contains ``text``; returns when it came."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append((time.monotonic(), line.rstrip("\n")))
        if text in line:
            return seen[-1][0]
    proc.kill()
    raise AssertionError(f"no line with {text!r}; stderr was:\n" + "\n".join(s for _, s in seen))


def test_first_sigint_finishes_the_chunk_in_flight(tmp_path):
    """Chunks of 1 s: SIGINT after the first chunk is acknowledged with an estimate, the chunk
    in flight is finished and saved, no new chunk starts, and the exit is 130."""
    proc = _start(tmp_path, [1.0] * 6)
    seen = []
    _wait_for(proc, "chunk 0 computed", seen)
    time.sleep(0.3)  # inside the second chunk
    proc.send_signal(signal.SIGINT)
    _wait_for(proc, "Ctrl-C: finishing the chunk in flight", seen)
    _, rest = proc.communicate(timeout=120)
    lines = [s for _, s in seen] + rest.splitlines()
    assert proc.returncode == 130, lines
    ack = next(s for s in lines if s.startswith("Ctrl-C:"))
    assert ack.startswith("Ctrl-C: finishing the chunk in flight (about ") and \
        ack.endswith(" s left); Ctrl-C again to stop now"), ack
    stopped = next(s for s in lines if s.startswith("STOPPED"))
    done = int(stopped.split()[1])
    assert 2 <= done < 6 and stopped.endswith("of 6")  # the chunk in flight finished, then it stopped
    computed = [s for s in lines if s.endswith("computed")]
    assert len(computed) == done
    rows = (tmp_path / "rows.csv").read_text().splitlines()
    assert rows[0] == "k,v" and len(rows) == 1 + done  # every finished chunk is saved


def test_sigint_is_acknowledged_inside_a_long_native_call_and_a_second_stops_now(tmp_path):
    """The second chunk is one 60 s native call: the first SIGINT is acknowledged within
    seconds (not after the call), and a second SIGINT ends the process with 130 long before
    the call would end."""
    proc = _start(tmp_path, [0.3, 60.0, 0.3])
    seen = []
    _wait_for(proc, "chunk 0 computed", seen)
    time.sleep(0.5)  # inside the 60 s call
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    acked = _wait_for(proc, "Ctrl-C: finishing the chunk in flight", seen, timeout=50)
    assert acked - sent < 30, "acknowledged only after the native call"
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=50)
    ended = time.monotonic()
    assert proc.returncode == 130
    assert ended - sent < 45, "the second Ctrl-C waited for the native call"
    assert "Ctrl-C again: stopping now" in rest
    assert "chunk 1 computed" not in rest and "FINISHED" not in rest
    assert (tmp_path / "rows.csv").read_text().splitlines() == ["k,v", "0,0.5"]


def test_no_sigint_runs_to_the_end(tmp_path):
    proc = _start(tmp_path, [0.1, 0.1])
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 0, rest
    lines = rest.splitlines()
    assert lines[0] == "fake: 0/2 chunks" and lines[-2].startswith("fake: 2/2 chunks, ") and lines[-1] == "FINISHED"
    assert not [s for s in lines if "Ctrl-C" in s]
