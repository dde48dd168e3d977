"""`ConceptVector`: one direction per layer, with where it came from, saved as a
llama.cpp control-vector GGUF file.

Layer convention: row L of ``directions`` belongs to the output of block L (llama.cpp's
tensor ``l_out-L``). In the file it is the tensor ``direction.L``, which llama.cpp's
``--control-vector`` adds to that same output, so a file we write steers llama.cpp at the
layers we mean. (Files from llama.cpp's cvector-generator store the activation difference
taken at ``l_out-(L-1)`` as ``direction.L``; we read ``direction.L`` as layer L all the same.)
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pyintro.disk import atomic_path

__all__ = ["ConceptVector", "directions", "load_for", "random_like"]

ARCH = "controlvector"
_DIRECTION = re.compile(r"direction\.(\d+)")

# pyintro's own keys; files from other tools have none of them.
_K_NAME = "pyintro.name"
_K_METHOD = "pyintro.method"
_K_PROMPTS = "pyintro.prompts"  # JSON list of strings
_K_POSITION = "pyintro.position"
_K_SHA = "pyintro.model_sha256"
_K_CONVENTION = "pyintro.layer_convention"
_K_HAS_LAYER0 = "pyintro.has_layer0"
_K_LAYER0 = "pyintro.direction0"  # float32 array [n_embd], present when has_layer0
_K_N_LAYER = "pyintro.n_layer"
_K_N_EMBD = "pyintro.n_embd"
# Bounds on what a file may claim before we allocate for it (the largest models today have
# ~130 layers and n_embd ~16k); a damaged or hostile file must not make us allocate GiBs.
MAX_LAYERS = 1024
MAX_EMBD = 1 << 17
MAX_ELEMENTS = 1 << 26  # n_layer * n_embd: 256 MB of float32


@dataclass(eq=False)
class ConceptVector:
    """A direction for every layer of a model, float32 ``[n_layer, n_embd]``, plus provenance.

    ``v[L]`` is layer L's direction ``[n_embd]``. ``-v``, ``k * v``, ``v / k``, ``v + w`` and
    ``v - w`` give new vectors; they keep the provenance of ``v`` (the left operand).
    """

    directions: np.ndarray  # [n_layer, n_embd] float32
    model_hint: str = ""  # the model's architecture, e.g. "llama"
    name: str = ""
    method: str = ""  # "contrast", "mean_difference", "pca", ...
    prompts: list[str] = field(default_factory=list)
    position: str = "last"  # the token whose activations were used
    model_sha256: str = ""
    layer_convention: str = "l_out"  # layer L = output of block L

    __array_ufunc__ = None  # so `np.float32(2) * v` calls our __rmul__ instead of numpy's

    def __post_init__(self) -> None:
        try:
            arr = np.array(self.directions, dtype=np.float32, order="C")  # a copy: no aliasing
        except (TypeError, ValueError):
            raise ValueError("directions must be a numeric array [n_layer, n_embd]") from None
        if arr.ndim != 2:
            raise ValueError(f"directions must be 2-D [n_layer, n_embd], got shape {arr.shape}")
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"directions must have at least one layer and one element, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("directions contain NaN or Inf")
        self.directions = arr
        if isinstance(self.prompts, str) or not all(isinstance(p, str) for p in self.prompts):
            raise ValueError("prompts must be a list of strings")
        self.prompts = list(self.prompts)
        for key in ("model_hint", "name", "method", "position", "model_sha256", "layer_convention"):
            if not isinstance(getattr(self, key), str):
                raise ValueError(f"{key} must be a string, got {getattr(self, key)!r}")

    def __repr__(self) -> str:
        return (f"ConceptVector(name={self.name!r}, method={self.method!r}, n_layer={self.n_layer}, "
                f"n_embd={self.n_embd}, model_hint={self.model_hint!r})")

    # -- shape ------------------------------------------------------------------------------

    @property
    def n_layer(self) -> int:
        return int(self.directions.shape[0])

    @property
    def n_embd(self) -> int:
        return int(self.directions.shape[1])

    def norms(self) -> np.ndarray:
        """L2 norm of each layer's direction, float ``[n_layer]``."""
        return np.linalg.norm(self.directions.astype(np.float64), axis=1)

    def __getitem__(self, layer: int) -> np.ndarray:
        """Layer ``layer``'s direction (a copy), float32 ``[n_embd]``; negative counts from the end."""
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
            raise ValueError(f"index a ConceptVector with an int layer, got {layer!r}")
        il = int(layer) + self.n_layer if layer < 0 else int(layer)
        if not 0 <= il < self.n_layer:
            raise ValueError(f"layer {layer} is out of range: this vector has layers 0..{self.n_layer - 1}")
        return self.directions[il].copy()

    # -- arithmetic -------------------------------------------------------------------------

    def _with(self, directions: np.ndarray, **changes) -> "ConceptVector":
        return replace(self, directions=directions, prompts=list(self.prompts), **changes)

    def __neg__(self) -> "ConceptVector":
        return self._with(-self.directions)

    def __mul__(self, k) -> "ConceptVector":
        if not _is_scalar(k):
            return NotImplemented
        return self._with(self.directions * np.float32(_finite(k)))

    __rmul__ = __mul__

    def __truediv__(self, k) -> "ConceptVector":
        if not _is_scalar(k):
            return NotImplemented
        if _finite(k) == 0:
            raise ValueError("cannot divide a ConceptVector by zero")
        return self._with(self.directions / np.float32(k))

    def __add__(self, other) -> "ConceptVector":
        if not isinstance(other, ConceptVector):
            return NotImplemented
        self._check_same_shape(other)
        return self._with(self.directions + other.directions, name=_join(self.name, "+", other.name))

    def __sub__(self, other) -> "ConceptVector":
        if not isinstance(other, ConceptVector):
            return NotImplemented
        self._check_same_shape(other)
        return self._with(self.directions - other.directions, name=_join(self.name, "-", other.name))

    def _check_same_shape(self, other: "ConceptVector") -> None:
        if self.directions.shape != other.directions.shape:
            raise ValueError(f"cannot combine vectors of shapes {self.directions.shape} and "
                             f"{other.directions.shape}: they come from different models")

    # -- files ------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write a llama.cpp control-vector GGUF file (usable with ``--control-vector``).

        Layers 1..n_layer-1 are F32 tensors ``direction.L`` [n_embd]. llama.cpp has no control
        vector for layer 0 and its loader rejects the whole file if it holds ``direction.0``
        (or any tensor not named ``direction.N``), so a non-zero layer 0 is kept in the
        metadata array ``pyintro.direction0`` instead, and a UserWarning says that llama.cpp
        will ignore it. ``ConceptVector.load`` restores it, so the round trip is exact.
        """
        import gguf

        p = Path(path).expanduser()
        if not p.parent.is_dir():
            raise FileNotFoundError(f"folder {p.parent} does not exist: create it first")
        layer0 = self.directions[0]
        has_layer0 = bool(layer0.view(np.uint32).any())  # any non-zero bit, so -0.0 survives too
        if np.any(layer0 != 0):
            warnings.warn(
                f"{p.name}: layer 0 of this vector is non-zero; it is saved for pyintro, "
                "but llama.cpp's --control-vector ignores layer 0",
                UserWarning,
                stacklevel=2,
            )
        w = gguf.GGUFWriter(None, arch=ARCH)
        w.add_string(f"{ARCH}.model_hint", self.model_hint)
        # As llama.cpp's cvector-generator and repeng do: the number of direction tensors.
        w.add_uint32(f"{ARCH}.layer_count", self.n_layer - 1)
        w.add_string(_K_NAME, self.name)
        w.add_string(_K_METHOD, self.method)
        w.add_string(_K_PROMPTS, json.dumps(self.prompts, ensure_ascii=False))
        w.add_string(_K_POSITION, self.position)
        w.add_string(_K_SHA, self.model_sha256)
        w.add_string(_K_CONVENTION, self.layer_convention)
        w.add_uint32(_K_N_LAYER, self.n_layer)
        w.add_uint32(_K_N_EMBD, self.n_embd)
        w.add_bool(_K_HAS_LAYER0, has_layer0)
        if has_layer0:
            w.add_array(_K_LAYER0, [float(x) for x in layer0])  # float32 -> float -> float32: exact
        for il in range(1, self.n_layer):
            w.add_tensor(f"direction.{il}", self.directions[il])
        with atomic_path(p) as tmp:  # a failed save leaves no half-written file
            w.write_header_to_file(tmp)
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
            w.close()

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ConceptVector":
        """Read a control-vector GGUF file, ours or another tool's.

        Layers without a ``direction.L`` tensor are zeros. ``n_layer`` is ``pyintro.n_layer``
        when present, else the larger of (highest L) + 1 and ``controlvector.layer_count`` + 1
        (other tools write layer_count = the number of direction tensors, n_layer - 1).
        """
        p = Path(path).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"control vector file not found: {p}")
        if not p.is_file():
            raise ValueError(f"control vector path is not a file: {p}")
        with open(p, "rb") as f:
            if f.read(4) != b"GGUF":
                raise ValueError(f"{p} is not a GGUF file (it does not start with 'GGUF')")
        try:
            return _read(p)
        except ValueError as e:
            if str(e).startswith(str(p)):
                raise
            raise ValueError(f"{p} is not a readable control-vector GGUF file: {_one_line(e)}") from None
        except Exception as e:  # gguf's reader fails on damaged files in many ways; keep it to one line
            raise ValueError(f"{p} is not a readable GGUF file ({type(e).__name__}: {_one_line(e)}); "
                             "it may be truncated: write it again") from None


def _read(p: Path) -> ConceptVector:
    import gguf

    reader = gguf.GGUFReader(p)
    fields = {name: f.contents() for name, f in reader.fields.items()}
    rows: dict[int, np.ndarray] = {}
    n_embd = None
    for t in reader.tensors:
        m = _DIRECTION.fullmatch(t.name)
        if m is None:
            continue  # not ours to read (llama.cpp itself would refuse such a file)
        il = int(m.group(1))
        if t.tensor_type != gguf.GGMLQuantizationType.F32:
            raise ValueError(f"{p}: tensor {t.name} is {t.tensor_type.name}, expected F32")
        data = np.asarray(t.data, dtype=np.float32).reshape(-1)
        if data.size != int(t.n_elements) or len(t.shape) != 1:
            raise ValueError(f"{p}: tensor {t.name} is damaged or not 1-D; write the file again")
        if n_embd is None:
            n_embd = data.size
        elif data.size != n_embd:
            raise ValueError(f"{p}: tensor {t.name} has {data.size} elements, others have {n_embd}")
        rows[il] = data.copy()
    del reader  # releases the memory map

    layer0 = fields.get(_K_LAYER0) if fields.get(_K_HAS_LAYER0) else None
    if layer0 is not None:
        layer0 = np.asarray(layer0, dtype=np.float32)
        if n_embd is None:
            n_embd = layer0.size
        elif layer0.size != n_embd:
            raise ValueError(f"{p}: {_K_LAYER0} has {layer0.size} elements, the tensors have {n_embd}")
    if n_embd is None and isinstance(fields.get(_K_N_EMBD), int) and fields[_K_N_EMBD] > 0:
        n_embd = fields[_K_N_EMBD]  # a one-layer vector whose layer 0 is zero
    if n_embd is None:
        raise ValueError(f"{p} holds no direction.N tensors: it is not a control vector")

    if isinstance(fields.get(_K_N_LAYER), int):
        n_layer = fields[_K_N_LAYER]
    else:
        count = fields.get(f"{ARCH}.layer_count")
        # llama.cpp's cvector-generator and repeng set it to the number of direction tensors,
        # n_layer - 1 for a full file (layer 0 never has one).
        n_layer = max(max(rows, default=0) + 1, count + 1 if isinstance(count, int) else 0)
    if rows and max(rows) >= n_layer:
        raise ValueError(f"{p}: tensor direction.{max(rows)} is beyond the file's {n_layer} layers")
    if not (0 < n_layer <= MAX_LAYERS and 0 < n_embd <= MAX_EMBD and n_layer * n_embd <= MAX_ELEMENTS):
        raise ValueError(f"{p} claims a vector of {n_layer} layers x {n_embd} floats, more than any model "
                         f"has (at most {MAX_LAYERS} layers, {MAX_EMBD} floats); the file is damaged")

    directions = np.zeros((n_layer, n_embd), dtype=np.float32)
    for il, row in rows.items():
        directions[il] = row
    if layer0 is not None:
        directions[0] = layer0
    prompts = fields.get(_K_PROMPTS)
    return ConceptVector(
        directions=directions,
        model_hint=_str(fields.get(f"{ARCH}.model_hint")),
        name=_str(fields.get(_K_NAME)),
        method=_str(fields.get(_K_METHOD)),
        prompts=json.loads(prompts) if isinstance(prompts, str) else [],
        position=_str(fields.get(_K_POSITION), "last"),
        model_sha256=_str(fields.get(_K_SHA)),
        layer_convention=_str(fields.get(_K_CONVENTION), "l_out"),
    )


def _str(value, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else "unknown error"


def _is_scalar(k) -> bool:
    return isinstance(k, numbers.Real) and not isinstance(k, bool) or (isinstance(k, np.ndarray) and k.ndim == 0)


def _finite(k) -> float:
    k = float(k)
    if not math.isfinite(k):
        raise ValueError(f"cannot scale a ConceptVector by {k}")
    return k


def _join(a: str, op: str, b: str) -> str:
    return f"{a} {op} {b}" if a and b else a or b


# -- vectors as arrays, random controls, strength scaling ----------------------------------------


def directions(vector, n_layer: int | None = None, n_embd: int | None = None) -> np.ndarray:
    """The per-layer directions of a ConceptVector or an array: float32 [n_layer, n_embd], checked
    (and against the model's shape when n_layer and n_embd are given)."""
    v = getattr(vector, "directions", vector)
    try:
        arr = np.asarray(v, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError("vector must be a ConceptVector or an array [n_layer, n_embd]") from None
    if arr.ndim != 2:
        raise ValueError(f"vector must be [n_layer, n_embd], got shape {arr.shape}; stack one row per layer")
    if n_layer is not None and arr.shape != (n_layer, n_embd):
        raise ValueError(f"the vector has {arr.shape[0]} layers of {arr.shape[1]} floats, the model needs "
                         f"n_layer {n_layer} x n_embd {n_embd}; extract the vector from this model")
    if not np.all(np.isfinite(arr)):
        raise ValueError("vector contains NaN or Inf")
    return arr


def load_for(path, model) -> ConceptVector:
    """A control-vector file whose shape fits ``model`` (else a one-line error saying so)."""
    v = ConceptVector.load(path)
    try:
        directions(v, model.n_layer, model.n_embd)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return v


def random_like(vector, seed: int = 0) -> ConceptVector:
    """Null control: random directions with the same per-layer norms as ``vector`` (a
    ConceptVector or an array [n_layer, n_embd]), as a ConceptVector named "random like <name>".

    Each row is a Gaussian sample rescaled to that layer's norm; the same seed gives the same vector.
    """
    d = directions(vector)
    norms = np.linalg.norm(d, axis=1, keepdims=True)  # [n_layer, 1]
    g = np.random.default_rng(seed).standard_normal(d.shape)  # [n_layer, n_embd]
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    name = getattr(vector, "name", "")
    return ConceptVector((g * norms).astype(np.float32), model_hint=getattr(vector, "model_hint", ""),
                         name=f"random like {name}" if name else "random", method=f"random_like (seed {seed})",
                         model_sha256=getattr(vector, "model_sha256", ""))
