"""Model's checks of its inputs (token ids, vocabulary ids, rows, injections): one-line errors
that say what to do, and the checked values in the forms the Decoder takes."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pyintro.decode import Spec
from pyintro.injection import Injection


def check_ids(model, ids: Sequence[int]) -> list[int]:
    """A prompt's token ids as ints, each in the vocabulary, the prompt within the context."""
    if isinstance(ids, str):
        raise ValueError("expected token ids; use model.tokenize(text) or model.chat(text)")
    ids = [int(i) for i in ids]
    if not ids:
        raise ValueError("the prompt is empty")
    if len(ids) > model.n_ctx:
        raise ValueError(f"the prompt has {len(ids)} tokens, more than the context ({model.n_ctx}); "
                         "load the model with a larger n_ctx")
    bad = [i for i in ids if not 0 <= i < model.n_vocab]
    if bad:
        raise ValueError(f"token id {bad[0]} is outside the vocabulary (0..{model.n_vocab - 1})")
    return ids


def check_vocab_ids(vocab_ids, n_vocab: int) -> np.ndarray:
    """Vocabulary ids to gather, as int32."""
    try:
        arr = np.asarray(vocab_ids)
    except (TypeError, ValueError):
        arr = np.zeros(0, dtype=object)
    if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu":
        raise ValueError("vocab_ids must be a non-empty list of token ids (or None for the whole vocabulary)")
    if arr.min() < 0 or arr.max() >= n_vocab:
        raise ValueError(f"vocab_ids must lie in 0..{n_vocab - 1}")
    return arr.astype(np.int32)


def prompt_rows(rows: Sequence[int], n: int) -> list[int]:
    """Row indices into a prompt of ``n`` tokens (negative from the end): sorted, distinct."""
    ks = sorted({int(k) + n if int(k) < 0 else int(k) for k in rows})
    if not ks or ks[0] < 0 or ks[-1] >= n:
        raise ValueError(f"rows {list(rows)} fall outside a prompt of {n} tokens")
    return ks


def resolve(model, inject: Sequence[Injection], n_tokens: int) -> list[Spec]:
    """Injections as the Decoder takes them: layer, vector and one scale per prompt token."""
    specs = []
    for inj in inject:
        if not isinstance(inj, Injection):
            raise ValueError(f"expected pyintro.Injection, got {type(inj).__name__}")
        specs.append(Spec(inj.resolve_layer(model.n_layer), inj.direction(model.n_layer, model.n_embd),
                          inj.scales(n_tokens), inj.continues, float(inj.strength)))
    return specs


def is_ids(x) -> bool:
    """One prompt (token ids), rather than a list of prompts."""
    return isinstance(x, np.ndarray) and x.ndim == 1 or (len(x) > 0 and isinstance(x[0], (int, np.integer)))


def common_length(a: list[int], b: list[int]) -> int:
    """The length of the common beginning of two prompts."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
