"""A short run of pyintro's native paths, for valgrind memcheck (see docs/hardening.md):

    PYTHONMALLOC=malloc valgrind --suppressions=tools/valgrind.supp --error-exitcode=99 \\
        python tools/valgrind_smoke.py

Loads the default model, captures, injects (logits and capture), runs a small batched
points() call with gathers, generates a few tokens, and exercises the error paths that
throw C++ exceptions through the bindings. Small on purpose: valgrind is ~50x slower.
Run it from outside the repository root (or with the normal build installed), so that
`import pyintro` finds the installed package with its extension.
"""

import sys

import numpy as np

import pyintro
from pyintro import Injection


def main() -> int:
    m = pyintro.Model.load(n_threads=1, n_ctx=64, n_seq_max=4, n_batch=64)
    ids = m.tokenize("The cat sat on the mat")
    v = np.random.default_rng(0).standard_normal(m.n_embd).astype(np.float32)

    cap = m.capture(ids, layers=[0, 7, m.n_layer - 1])
    cap_inj = m.capture(ids, layers=[3, 8], inject=[Injection(v, 5, 2.0, "all")])
    base = m.logits(ids)
    steered = m.logits(ids, inject=[Injection(v, 10, 4.0)])
    pts = m.points(ids, [[Injection(v, 2, 1.0)], [Injection(v, 20, -3.0, [1, 3])], []],
                   vocab_ids=[1, 5, 100], rows=[len(ids) - 2, len(ids) - 1])
    gen = m.generate(ids, max_tokens=3, n=2, inject=[Injection(v, 6, 1.0)])

    errors = 0
    for bad in (
        lambda: m.logits(ids, inject=[Injection(v, 99, 1.0)]),
        lambda: m.logits(ids, inject=[Injection(v, 3, 1e30)]),  # overflow: thrown from the graph callback path
        lambda: m._engine.decode([1, 2], [0, 5], [0, 0], [1, 1]),  # llama_decode fails
        lambda: m._engine.decode([1.5], [0], [0], [1]),
        lambda: m._engine.seq_rm(-7, 0, -1),
    ):
        try:
            bad()
        except (ValueError, RuntimeError):
            errors += 1
        m.reset()
    m.close()

    ok = (cap.shape == (3, len(ids), m.n_embd) and cap_inj.shape == (2, len(ids), m.n_embd)
          and np.isfinite(base).all() and not np.array_equal(base, steered)
          and pts.shape == (3, 2, 3) and len(gen) == 2 and errors == 5)
    print("valgrind smoke:", "ok" if ok else "UNEXPECTED RESULTS")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
