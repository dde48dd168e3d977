"""`Injection`: what to add, where, and to which tokens."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence, Union

import numpy as np

from pyintro.vectors import directions

Positions = Union[str, int, Sequence[int], np.ndarray]
_F32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Injection:
    """Add ``strength * vector`` to the output of block ``layer`` at chosen tokens.

    vector:    an array ``[n_embd]``, an array ``[n_layer, n_embd]`` (row ``layer`` is used),
               or a ``ConceptVector``.
    layer:     0-based block index; layer L is the tensor ``l_out-L``. Negative counts from the end.
    positions: ``"last"`` (the last prompt token), ``"all"``, an int ``k`` (token k onward),
               a list of token indices, or a float mask with one weight per prompt token.

    During generation, ``"last"``, ``"all"`` and ``k`` keep injecting into every generated
    token; lists and masks cover prompt tokens only.
    """

    vector: Any
    layer: int
    strength: float = 1.0
    positions: Positions = "last"

    def __post_init__(self) -> None:
        try:
            strength = float(self.strength)
        except (TypeError, ValueError):
            raise ValueError(f"strength must be a number, got {self.strength!r}") from None
        if not math.isfinite(strength):
            raise ValueError(f"strength must be finite, got {self.strength!r}")
        if abs(strength) > _F32_MAX:
            raise ValueError(f"strength {strength:g} is past float32's range (|strength| <= {_F32_MAX:.3g})")
        if isinstance(self.layer, bool) or not isinstance(self.layer, (int, np.integer)):
            raise ValueError(f"layer must be an int, got {self.layer!r}")

    @property
    def continues(self) -> bool:
        """Whether the injection also applies to generated tokens."""
        return isinstance(self.positions, (str, int, np.integer))

    def resolve_layer(self, n_layer: int) -> int:
        il = int(self.layer)
        if il < 0:
            il += n_layer
        if not 0 <= il < n_layer:
            raise ValueError(f"layer {self.layer} is out of range: this model has layers 0..{n_layer - 1}")
        return il

    def direction(self, n_layer: int, n_embd: int) -> np.ndarray:
        """The vector for this layer, float32 ``[n_embd]``, checked."""
        il = self.resolve_layer(n_layer)
        v = getattr(self.vector, "directions", self.vector)
        try:
            arr = np.asarray(v, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError("vector must be an array of numbers or a ConceptVector") from None
        if arr.ndim == 2:
            return np.ascontiguousarray(directions(arr, n_layer, n_embd)[il])
        if arr.ndim != 1 or arr.shape[0] != n_embd:
            raise ValueError(f"vector has shape {tuple(np.shape(v))}, the model's n_embd is {n_embd}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("vector contains NaN or Inf")
        return np.ascontiguousarray(arr)

    def mask(self, n_tokens: int) -> np.ndarray:
        """Per-token weight ``[n_tokens]`` float32, before ``strength``."""
        p = self.positions
        out = np.zeros(n_tokens, dtype=np.float32)
        if isinstance(p, str):
            if p == "last":
                out[-1] = 1.0
            elif p == "all":
                out[:] = 1.0
            else:
                raise ValueError(f"positions must be 'last', 'all', an int, a list of ints or a mask, got {p!r}")
            return out
        if isinstance(p, (int, np.integer)) and not isinstance(p, bool):
            k = int(p) + n_tokens if p < 0 else int(p)
            if not 0 <= k < n_tokens:
                raise ValueError(f"position {p} is outside the prompt ({n_tokens} tokens)")
            out[k:] = 1.0
            return out
        arr = np.asarray(p)
        if arr.ndim != 1:
            raise ValueError("positions must be 'last', 'all', an int, a list of ints or a 1-D mask")
        if arr.dtype.kind in "iu":
            idx = np.where(arr < 0, arr + n_tokens, arr)
            if np.any(idx < 0) or np.any(idx >= n_tokens):
                raise ValueError(f"positions {list(arr)} fall outside the prompt ({n_tokens} tokens)")
            out[idx] = 1.0
            return out
        if arr.dtype.kind not in "fb":
            raise ValueError("positions must be 'last', 'all', an int, a list of ints or a float mask")
        if arr.shape[0] != n_tokens:
            raise ValueError(f"the mask has {arr.shape[0]} entries but the prompt has {n_tokens} tokens")
        mask = arr.astype(np.float32)
        if not np.all(np.isfinite(mask)):
            raise ValueError("the mask contains NaN or Inf")
        return mask

    def scales(self, n_tokens: int) -> np.ndarray:
        """``strength * mask``, float32 ``[n_tokens]``."""
        scales = self.mask(n_tokens).astype(np.float64) * float(self.strength)
        if np.any(np.abs(scales) > _F32_MAX):
            raise ValueError(f"strength {float(self.strength):g} times the mask leaves float32's range; "
                             "use a smaller strength or mask")
        return scales.astype(np.float32)


def _unique(values, check, what: str) -> list:
    """``check(v)`` of each value, refusing repeats and an empty list."""
    out: list = []
    for v in values:
        c = check(v)
        if c in out:
            raise ValueError(f"{what} {v} is listed twice")
        out.append(c)
    if not out:
        raise ValueError(f"no {what}s given")
    return out


def layer_list(layers, n_layer: int) -> list[int]:
    """Checked 0-based block indices (negative ones count from the end): None means all
    ``n_layer`` blocks; an int means that one block."""
    if layers is None:
        return list(range(n_layer))

    def check(layer) -> int:
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
            raise ValueError(f"layers must be ints, got {layer!r}")
        il = int(layer) + n_layer if layer < 0 else int(layer)
        if not 0 <= il < n_layer:
            raise ValueError(f"layer {layer} is out of range: this model has layers 0..{n_layer - 1}")
        return il

    return _unique([layers] if isinstance(layers, (int, np.integer)) else layers, check, "layer")


def strength_list(strengths) -> list[float]:
    """Checked strengths: finite numbers, none listed twice; a single number means that one."""

    def check(s) -> float:
        try:
            f = float(s)
        except (TypeError, ValueError):
            raise ValueError(f"strengths must be numbers, got {s!r}") from None
        if not math.isfinite(f):
            raise ValueError(f"strengths must be finite, got {s!r}")
        return f

    return _unique([strengths] if isinstance(strengths, (int, float, np.number)) else strengths, check, "strength")
