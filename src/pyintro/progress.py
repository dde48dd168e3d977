"""Long work: progress bars, and Ctrl-C that waits for the chunk in flight.

``progress`` arguments across pyintro mean the same thing:
  None (default): a tqdm bar on stderr when stderr is a terminal, nothing in pipes and tests;
  True: a bar even when stderr is not a terminal; False: nothing;
  a callable: called as ``progress(done, total)`` after each chunk.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Callable


class Closing:
    """``with obj:`` calls ``obj.close()`` at the end of the block."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Progress(Closing):
    """Counts finished units of work and shows them as the ``progress`` argument asks."""

    def __init__(self, progress, total: int, desc: str, unit: str = "point"):
        self.total, self.done = int(total), 0
        self._callback: Callable | None = progress if callable(progress) else None
        self._bar = None
        show = progress is True or (progress is None and sys.stderr.isatty())
        if self._callback is None and show and self.total > 0:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                             dynamic_ncols=True)

    def advance(self, n: int) -> None:
        self.done += n
        if self._callback is not None:
            self._callback(self.done, self.total)
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped long work at a chunk boundary: every finished chunk is saved in ``out``."""

    def __init__(self, done: int, total: int, out, what: str = "points"):
        self.done, self.total, self.out = done, total, out
        saved = f"; they are saved in {out}: resume=True (pyintro: --resume) computes the rest" if out else ""
        super().__init__(f"interrupted after {done} of {total} {what}{saved}")


class SigintAtChunkEnd:
    """While long work runs in the main thread, the first Ctrl-C is held until the chunk in
    flight is written (``requested`` becomes True; the caller stops after it); a second Ctrl-C
    stops at once (a resumed run drops any half-written row). Elsewhere, SIGINT is left alone."""

    def __init__(self):
        self.requested = False
        self._old = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "SigintAtChunkEnd":
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
