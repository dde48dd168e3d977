"""Long work: progress on a terminal or in a log, and Ctrl-C that waits for the chunk in flight.

``progress`` arguments across pyintro mean the same thing:
  None (default): a tqdm bar on stderr when stderr is a terminal, nothing in pipes and tests;
  "log": a tqdm bar on a terminal; otherwise (a pipe, nohup, sbatch, a log file) plain lines
         on stderr, ``<desc>: <done>/<total> <unit>s, <rate>/s, ETA <m:ss>``: one when the work
         starts, then at most one every ``LOG_INTERVAL`` seconds as chunks finish, and a last
         one ending ``done in <m:ss>`` (the CLI passes "log");
  True: a bar even when stderr is not a terminal; False: nothing;
  a callable: called as ``progress(done, total)`` after each chunk.

Ctrl-C during ``SigintAtChunkEnd`` is acknowledged at once on stderr, whatever ``progress`` is
("Ctrl-C: finishing the chunk in flight (about N s left); Ctrl-C again to stop now"), even
while the main thread is inside a long native call; the work stops at the end of the chunk.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from typing import Callable, Optional

LOG_INTERVAL = 5.0  # seconds between two log lines (the first and the last are always written)
_clock = time.monotonic


class Closing:
    """``with obj:`` calls ``obj.close()`` at the end of the block."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def clock(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss`` from an hour on)."""
    s = max(0, int(round(seconds)))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def _rate(per_s: float) -> str:
    return f"{per_s:.0f}" if per_s >= 100 else f"{per_s:.1f}" if per_s >= 10 else f"{per_s:.2f}"


class Progress(Closing):
    """Counts finished units of work and shows them as the ``progress`` argument asks.
    ``advance`` is called once per finished chunk; the chunks' timing also serves Ctrl-C's
    estimate of the time left in the chunk in flight (``chunk_seconds_left``)."""

    def __init__(self, progress, total: int, desc: str, unit: str = "point"):
        if not (progress is None or isinstance(progress, bool) or progress == "log" or callable(progress)):
            raise ValueError(f"progress must be None, True, False, 'log' or a callable, got {progress!r}")
        self.total, self.done, self.desc, self.unit = int(total), 0, desc, unit
        self.chunks, self.start = 0, _clock()
        self.last = self.start  # when the last chunk finished
        self._callback: Callable | None = progress if callable(progress) else None
        self._bar = None
        self._logged: Optional[float] = None  # when the last log line was written
        self._logged_done = -1
        tty = sys.stderr.isatty()
        show = progress is True or (progress in (None, "log") and tty)
        if self._callback is None and show and self.total > 0:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                             dynamic_ncols=True)
        elif progress == "log" and not tty and self.total > 0:
            self._logged = self.start
            self._line()

    def advance(self, n: int) -> None:
        self.done += n
        self.chunks += 1
        self.last = _clock()
        if self._callback is not None:
            self._callback(self.done, self.total)
        if self._bar is not None:
            self._bar.update(n)
        if self._logged is not None and (self.done >= self.total or self.last - self._logged >= LOG_INTERVAL):
            self._line()

    def chunk_seconds_left(self) -> Optional[int]:
        """About how many seconds the chunk in flight still needs, from the mean time of the
        finished chunks; None before the first chunk ends, or when it is already overdue."""
        if self.chunks == 0:
            return None
        left = (self.last - self.start) / self.chunks - (_clock() - self.last)
        return math.ceil(left) if left > 0 else None

    def write(self, text: str) -> None:
        """A line on stderr that does not break the bar."""
        if self._bar is not None:
            from tqdm import tqdm

            tqdm.write(text, file=sys.stderr)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def _line(self) -> None:
        now = _clock()
        self._logged, self._logged_done = now, self.done
        text = f"{self.desc}: {self.done}/{self.total} {self.unit}s"
        elapsed = now - self.start
        if self.done > 0 and elapsed > 0:
            rate = self.done / elapsed
            text += f", {_rate(rate)}/s, " + (f"done in {clock(elapsed)}" if self.done >= self.total
                                                 else f"ETA {clock((self.total - self.done) / rate)}")
        self.write(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._logged is not None and self._logged_done != self.done:
            self._line()  # where the work stopped (an error or Ctrl-C)
        self._logged = None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped long work at a chunk boundary: every finished chunk is saved in ``out``.

    done, total: units finished and asked for; what: their name ("points", "words");
    resumes_itself: True where the next run continues on its own (a concept library), False
    where it needs ``resume=True`` (the CLI's ``--resume``)."""

    def __init__(self, done: int, total: int, out, what: str = "points", resumes_itself: bool = False):
        self.done, self.total, self.out, self.what = done, total, out, what
        self.resumes_itself = resumes_itself
        how = "the next run computes only the rest" if resumes_itself else \
            "run it again with --resume (resume=True) to compute the rest"
        saved = f"; they are saved in {out}: {how}" if out else ""
        super().__init__(f"interrupted after {done} of {total} {what}{saved}")


class SigintAtChunkEnd:
    """While long work runs in the main thread, the first Ctrl-C is held until the chunk in
    flight is written (``requested`` becomes True; the caller stops after it) and acknowledged
    at once on stderr, with the seconds left in the chunk when ``bar`` (a Progress) has timed
    one; a second Ctrl-C stops at once with KeyboardInterrupt (a resumed run drops any
    half-written row). Elsewhere (another thread, a program with its own SIGINT handler),
    SIGINT is left alone.

    **A second Ctrl-C ends the process (exit status 130)** when the main thread is inside one
    native call (a long llama.cpp decode) and cannot stop within ``GRACE`` seconds; not in a
    Jupyter kernel, where the KeyboardInterrupt comes when that call returns."""

    GRACE = 2.0

    def __init__(self, bar: Optional[Progress] = None):
        self.bar = bar
        self.requested = False
        self._old = None
        self._handled = 0  # calls of the Python-level handler (the main thread, between bytecodes)
        self._seen = 0  # SIGINTs the watcher thread saw (at once, through the wakeup fd)
        self._watcher: Optional[threading.Thread] = None
        self._pipe: Optional[tuple[int, int]] = None
        self._old_fd = -1
        self._left = threading.Event()

    def _say(self, count: int) -> None:
        if count == 1:
            left = self.bar.chunk_seconds_left() if self.bar is not None else None
            about = f" (about {left} s left)" if left is not None else ""
            text = f"Ctrl-C: finishing the chunk in flight{about}; Ctrl-C again to stop now"
        elif count == 2:
            text = "Ctrl-C again: stopping now"
        else:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def _handler(self, signum, frame):
        self._handled += 1
        self.requested = True
        if self._watcher is None:
            self._say(self._handled)
        if self._handled >= 2 or self._seen >= 2:  # two SIGINTs in one native call reach here once
            raise KeyboardInterrupt

    def _watch(self, fd: int) -> None:
        """The watcher thread: reads the bytes the C-level signal handler writes at once (one per
        signal), while the main thread may be inside a native call for a long time."""
        while True:
            try:
                data = os.read(fd, 64)
            except OSError:
                return
            if not data or self._left.is_set():
                return
            for byte in data:
                if byte != signal.SIGINT:
                    continue
                self._seen += 1
                self.requested = True
                self._say(self._seen)
                if self._seen == 2 and "ipykernel" not in sys.modules and not self._left.wait(self.GRACE):
                    sys.stderr.flush()
                    os._exit(130)

    def __enter__(self) -> "SigintAtChunkEnd":
        if threading.current_thread() is not threading.main_thread() or \
                signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return self
        self._old = signal.signal(signal.SIGINT, self._handler)
        try:
            r, w = os.pipe()
            os.set_blocking(w, False)
            old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except (OSError, ValueError, AttributeError):
            return self  # no wakeup fd here: the handler acknowledges, between bytecodes
        if old_fd != -1:  # someone else (an event loop) listens: give it back, use the handler only
            signal.set_wakeup_fd(old_fd)
            os.close(r)
            os.close(w)
            return self
        self._pipe = (r, w)
        self._watcher = threading.Thread(target=self._watch, args=(r,), name="pyintro-sigint", daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._watcher is not None:
            signal.set_wakeup_fd(-1)
            self._left.set()
            r, w = self._pipe
            try:
                os.write(w, b"\0")  # wake the watcher
            except OSError:
                pass
            self._watcher.join(timeout=1.0)
            os.close(w)
            if not self._watcher.is_alive():
                os.close(r)
            self._watcher = None
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
