"""What an injection is (`Injection`, `Positions`) and the checked inputs experiments take
(`Layers`, `Strengths`): each is checked once, where it enters, and passed on as a typed value."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np

from pyintro.vectors import directions

__all__ = ["Injection", "Layers", "Positions", "Strengths"]

_F32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Positions:
    """The tokens an injection touches, and whether it goes on into generated tokens.

    Make one with a named constructor (the CLI's ``--positions`` spells them the same way):

    ========================  ===================  =====================================
    constructor               CLI                  tokens
    ========================  ===================  =====================================
    ``Positions.last()``      ``last``             the last prompt token
    ``Positions.all()``       ``all``              every prompt token
    ``Positions.start(k)``    ``from:K``           prompt token k onward (k < 0: from the end)
    ``Positions.tokens(ix)``  ``tokens:I,J,...``   these prompt tokens
    ``Positions.weights(w)``  (API only)           a weight per prompt token
    ========================  ===================  =====================================

    ``generated``: whether every generated token (``Model.generate``) and every scored
    continuation token (``Model.score``) is injected too. It defaults to True for ``last``,
    ``all`` and ``start`` (the injection "continues"), False for ``tokens`` and ``weights``.
    """

    kind: str
    index: int = 0
    indices: tuple = ()
    mask: tuple = ()
    generated: bool = True

    @classmethod
    def last(cls, generated: bool = True) -> "Positions":
        return cls("last", generated=generated)

    @classmethod
    def all(cls, generated: bool = True) -> "Positions":
        return cls("all", generated=generated)

    @classmethod
    def start(cls, k: int, generated: bool = True) -> "Positions":
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise ValueError(f"Positions.start takes an int token index, got {k!r}")
        return cls("start", index=int(k), generated=generated)

    @classmethod
    def tokens(cls, indices: Sequence[int], generated: bool = False) -> "Positions":
        arr = np.asarray(indices)
        if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu":
            raise ValueError(f"Positions.tokens takes a non-empty list of int token indices, got {indices!r}")
        return cls("tokens", indices=tuple(int(i) for i in arr), generated=generated)

    @classmethod
    def weights(cls, mask: Sequence[float], generated: bool = False) -> "Positions":
        arr = np.asarray(mask)
        if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "fiub":
            raise ValueError("Positions.weights takes a 1-D list of numbers, one per prompt token")
        arr = arr.astype(np.float32)
        if not np.all(np.isfinite(arr)):
            raise ValueError("the mask contains NaN or Inf")
        return cls("weights", mask=tuple(float(x) for x in arr), generated=generated)

    @classmethod
    def parse(cls, text: str) -> "Positions":
        """``last``, ``all``, ``from:K`` or ``tokens:I,J,...`` (the CLI's spelling)."""
        t = str(text).strip()
        try:
            if t in ("last", "all"):
                return cls(t)
            if t.startswith("from:"):
                return cls.start(int(t[5:]))
            if t.startswith("tokens:"):
                return cls.tokens([int(x) for x in t[7:].split(",") if x.strip()])
        except ValueError:
            pass
        raise ValueError(f"positions {text!r}: use last, all, from:K (token K onward) or tokens:I,J,...")

    def __str__(self) -> str:
        text = {"last": "last", "all": "all", "start": f"from:{self.index}", "weights": "weights",
                "tokens": "tokens:" + ",".join(str(i) for i in self.indices)}[self.kind]
        default = self.kind in ("last", "all", "start")
        return text if self.generated == default else f"{text} (generated: {self.generated})"

    def mask_for(self, n_tokens: int) -> np.ndarray:
        """Per-token weight ``[n_tokens]`` float32."""
        out = np.zeros(n_tokens, dtype=np.float32)
        if self.kind == "last":
            out[-1] = 1.0
        elif self.kind == "all":
            out[:] = 1.0
        elif self.kind == "start":
            k = self.index + n_tokens if self.index < 0 else self.index
            if not 0 <= k < n_tokens:
                raise ValueError(f"position {self.index} is outside the prompt ({n_tokens} tokens)")
            out[k:] = 1.0
        elif self.kind == "tokens":
            idx = np.asarray(self.indices)
            idx = np.where(idx < 0, idx + n_tokens, idx)
            if np.any(idx < 0) or np.any(idx >= n_tokens):
                raise ValueError(f"positions {list(self.indices)} fall outside the prompt ({n_tokens} tokens)")
            out[idx] = 1.0
        else:
            if len(self.mask) != n_tokens:
                raise ValueError(f"the mask has {len(self.mask)} entries but the prompt has {n_tokens} tokens")
            out[:] = self.mask
        return out


def as_positions(value) -> Positions:
    """A Positions from a Positions or the strings "last" / "all" (and the CLI's spellings)."""
    if isinstance(value, Positions):
        return value
    if isinstance(value, str):
        return Positions.parse(value)
    raise ValueError(f"positions must be a pyintro.Positions (Positions.start({value!r}), Positions.tokens(...), "
                     f"...) or 'last' / 'all', got {value!r}")


@dataclass(frozen=True)
class Injection:
    """Add ``strength * vector`` to the output of block ``layer`` at chosen tokens.

    vector:    an array ``[n_embd]``, an array ``[n_layer, n_embd]`` (row ``layer`` is used),
               or a ``ConceptVector``.
    layer:     0-based block index; layer L is the tensor ``l_out-L``. Negative counts from the end.
    positions: a ``Positions`` (``Positions.last()``, ``.all()``, ``.start(k)``, ``.tokens([...])``,
               ``.weights(mask)``), or "last" / "all". Whether generated tokens are injected too
               is ``positions.generated``.
    """

    vector: Any
    layer: int
    strength: float = 1.0
    positions: Union[Positions, str] = "last"

    def __post_init__(self) -> None:
        object.__setattr__(self, "strength", _strength(self.strength, "strength"))
        if isinstance(self.layer, bool) or not isinstance(self.layer, (int, np.integer)):
            raise ValueError(f"layer must be an int, got {self.layer!r}")
        object.__setattr__(self, "positions", as_positions(self.positions))

    @property
    def continues(self) -> bool:
        """Whether the injection also applies to generated tokens."""
        return self.positions.generated

    def resolve_layer(self, n_layer: int) -> int:
        return _layer(self.layer, n_layer)

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
        return self.positions.mask_for(n_tokens)

    def scales(self, n_tokens: int) -> np.ndarray:
        """``strength * mask``, float32 ``[n_tokens]``."""
        scales = self.mask(n_tokens).astype(np.float64) * float(self.strength)
        if np.any(np.abs(scales) > _F32_MAX):
            raise ValueError(f"strength {float(self.strength):g} times the mask leaves float32's range; "
                             "use a smaller strength or mask")
        return scales.astype(np.float32)


# -- checked inputs -------------------------------------------------------------------------------

def _strength(value, what: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"{what} must be finite, got {value!r}")
    if abs(f) > _F32_MAX:
        raise ValueError(f"{what} {f:g} is past float32's range (|{what}| <= {_F32_MAX:.3g})")
    return f


def _layer(value, n_layer: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"layers must be ints, got {value!r}")
    il = int(value) + n_layer if value < 0 else int(value)
    if not 0 <= il < n_layer:
        raise ValueError(f"layer {value} is out of range: this model has layers 0..{n_layer - 1} "
                         "(negative layers count from the end: -1 is the last)")
    return il


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


class Layers(tuple):
    """Checked 0-based block indices of one model (``n_layer``): in range, none twice. Negative
    indices count from the end (-1 is the last layer) and are normalised here, once.

    ``Layers.of(None, n_layer)`` is every layer; an int is that one layer; a Layers of the same
    model passes through unchecked."""

    n_layer: int

    def __new__(cls, values, n_layer: int) -> "Layers":
        values = [values] if isinstance(values, (int, np.integer)) else values
        self = super().__new__(cls, _unique(values, lambda v: _layer(v, n_layer), "layer"))
        self.n_layer = int(n_layer)
        return self

    @classmethod
    def of(cls, values, n_layer: int) -> "Layers":
        if isinstance(values, Layers) and values.n_layer == n_layer:
            return values
        return cls(range(n_layer) if values is None else values, n_layer)


class Strengths(tuple):
    """Checked strengths: finite numbers within float32's range, none twice; a single number
    means that one. ``Strengths.of(values, low, high)`` also refuses values outside [low, high]
    (a Strengths passes through after that range check)."""

    def __new__(cls, values) -> "Strengths":
        values = [values] if isinstance(values, (int, float, np.number)) else values
        return super().__new__(cls, _unique(values, lambda s: _strength(s, "strengths"), "strength"))

    @classmethod
    def of(cls, values, low: Optional[float] = None, high: Optional[float] = None, hint: str = "") -> "Strengths":
        out = values if isinstance(values, Strengths) else cls(values)
        lo = -math.inf if low is None else low
        hi = math.inf if high is None else high
        for s in out:
            if not lo <= s <= hi:
                raise ValueError(f"strength {s:g} is out of range: use strengths from {lo:g} to {hi:g}{hint}")
        return out
