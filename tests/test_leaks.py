"""Leaks and growth (#6): resident memory must plateau over many decodes and many models.

Slow (minutes). The workloads are bench/leaks.py's (which prints the same curves). RSS comes
from /proc/self/statm; the allocator keeps freed memory, so we compare the second half of each
run with its middle, after warm-up, not with the start."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from leaks import MB, decodes_curve, models_curve  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm")]


def _plateau(curve: list[int]) -> int:
    """Growth over the second half of a curve, in bytes."""
    return curve[-1] - curve[len(curve) // 2]


def test_10000_decodes_with_injection_and_capture_plateau():
    # One decode each: points() reuses the cached clean prefix, capture() decodes the short
    # prompt afresh with an injection into every row. RSS every 500 decodes.
    curve = [r for _, r in decodes_curve(10_000, 500)[1:]]
    growth = _plateau(curve)
    print(f"RSS over 10000 decodes (MiB, every 500): {[round(c / MB, 1) for c in curve]}; "
          f"second half {growth / MB:+.2f} MiB")
    assert growth <= 4 * MB, [round(c / MB, 1) for c in curve]


def test_create_and_free_50_models_plateau():
    curve = [r for _, r in models_curve(50)[1:]]
    growth = _plateau(curve)
    print(f"RSS after each of 50 models (MiB): {[round(c / MB, 1) for c in curve]}; "
          f"second half {growth / MB:+.2f} MiB")
    assert growth <= 8 * MB, [round(c / MB, 1) for c in curve]
