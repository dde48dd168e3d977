"""`Model`: a GGUF model loaded into pyintro's engine.

A thin facade: it checks its arguments, then hands the decodes to a `Decoder`
(pyintro.decode), which keeps the clean prompt prefix that later calls reuse. The knobs only
benchmarks and tests turn are one `Settings` value (pyintro.engine).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from pyintro import prompts
from pyintro._native import _engine
from pyintro import head
from pyintro._inputs import check_ids, check_vocab_ids, common_length, is_ids, prompt_rows, resolve
from pyintro.decode import Decoder, first_injected
from pyintro.engine import Settings, open_engine
from pyintro.files import check_gguf_file, file_type_name, resolve_model
from pyintro.generate import generate, sampler
from pyintro.injection import Injection, Layers
from pyintro.tree import tree


def _from_engine(name: str, doc: str) -> property:
    """A read-only property forwarded to the engine's attribute ``name``."""
    return property(lambda self: getattr(self._engine, name), doc=doc)


class Model:
    """A GGUF model in pyintro's engine.

    **Not thread-parallel:** one Model may be shared across threads, but calls are
    serialised by a lock. Use one Model per thread to run in parallel.
    """

    def __init__(self, engine: "_engine.Engine", path: Path, n_gpu_layers: int = 0, chat_template: str = "auto",
                 user_prefix: str | None = None, assistant_prefix: str | None = None, fast_head: bool = True,
                 settings: Settings = Settings()):
        self._engine = engine
        self.path = path
        self.n_gpu_layers = n_gpu_layers
        self.settings = settings
        self._sha256: str | None = None
        self._meta = dict(engine.metadata())
        self._decoder = Decoder(engine, head.post_ops(engine.arch, self._meta) if fast_head else None,
                                settings.points_per_call)
        try:
            self.prompt_format = prompts.resolve(engine, chat_template, user_prefix, assistant_prefix, path.name)
        except BaseException:
            engine.close()
            raise

    # -- lifetime ---------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        n_gpu_layers: int = 0,
        n_threads: int | None = None,
        n_ctx: int = 4096,
        n_seq_max: int | None = None,
        batch_invariant: bool = True,
        chat_template: str = "auto",
        user_prefix: str | None = None,
        assistant_prefix: str | None = None,
        fast_head: bool = True,
        settings: Settings = Settings(),
    ) -> "Model":
        """Load a GGUF file: a path, an alias ("smollm2", "gemma3-270m"), "org/repo:file.gguf"
        from the local Hugging Face cache, or None for the default model (``files.resolve_model``).

        n_gpu_layers: layers to offload (-1: all); has no effect on a CPU-only build.
        n_ctx:        KV cells shared by all sequences: a call's prompt plus all its points' tokens
                      must fit.
        n_seq_max:    sequences decoded together (1..255); ``points`` runs this many points per call.
                      None: 128, or for a recurrent or hybrid model (Mamba, RWKV, LFM2, Qwen3.5)
                      as many as 1 GiB of recurrent state holds (``pyintro.recurrent``).
        batch_invariant: True (the default): llama.cpp decodes at most 56 rows per call, padded to
                      a multiple of 2, 4 or 8 rows and outputs, as the file's weight types need
                      (``pyintro.padding``), with flash attention on. A point's logits
                      then do not depend on the other points of its batch, its slot, or whether it
                      ran alone: on the CPU they are bit-identical (docs/numerics.md). False:
                      llama.cpp's throughput settings (512-row calls, no padding), whose results
                      depend on the batch in the last bits.
        chat_template: how ``chat`` formats prompts: "auto" (the file's own template; a base
                      model without one falls back to "raw" with a warning), a llama.cpp built-in
                      name ("chatml", "llama3", ...), a Jinja file path, or "raw" (a
                      "Human: ...\n\nAssistant:" transcript; ``user_prefix`` / ``assistant_prefix``
                      change its labels). See ``pyintro.prompts``.
        fast_head:    True (the default): ``points`` with a few ``vocab_ids`` and no stats computes
                      just those logits from the final norm's rows, skipping llama.cpp's full
                      unembedding, once a first call has shown it equals the full path to float
                      rounding (``pyintro.head``). False: always the full path.
        settings:     knobs for benchmarks and tests (``Settings``).
        """
        p = resolve_model(path)
        check_gguf_file(p)
        engine = open_engine(p, n_gpu_layers, n_threads, n_ctx, n_seq_max, batch_invariant, settings)
        return cls(engine, p, int(n_gpu_layers), chat_template, user_prefix, assistant_prefix, fast_head, settings)

    def reset(self) -> None:
        """Forget the cached prompt prefix (sequence 0's KV cells); the next call decodes its
        prompt from the start. Results do not depend on it: a point's logits are the same
        whether its prefix was cached or not."""
        self._decoder.reset()

    def close(self) -> None:
        """Free the model and context. Safe to call twice."""
        with self._decoder.lock:
            self._engine.close()
            self._decoder.prefix = []

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._engine.closed else f"{self.arch}, {self.n_layer} layers"
        return f"Model({str(self.path)!r}, {state})"

    # -- description ------------------------------------------------------------------------

    arch = _from_engine("arch", "llama.cpp's name of the architecture (general.architecture)")
    n_layer = _from_engine("n_layer", "Layers (blocks); layer L is the output of block L")
    n_embd = _from_engine("n_embd", "Width of the residual stream")
    n_vocab = _from_engine("n_vocab", "Vocabulary size")
    n_ctx = _from_engine("n_ctx", "KV cells, shared by all sequences")
    n_seq_max = _from_engine("n_seq_max", "Sequences a call may use (points per engine call at most)")
    n_batch = _from_engine("n_batch", "Rows per llama.cpp decode call, padding included")
    chat_template = _from_engine("chat_template", "The file's chat template ('' if none)")

    @property
    def batch_invariant(self) -> bool:
        return self._engine.row_unit > 1 and self._engine.flash_attn and self._engine.n_batch < 64

    def numerics(self) -> dict:
        """What a point's value depends on besides its inputs: the decode settings, this build of
        llama.cpp and the CPU features it was compiled for (for provenance records)."""
        return {
            "batch_invariant": self.batch_invariant, "flash_attn": bool(self._engine.flash_attn),
            "n_batch": self.n_batch, "row_unit": int(self._engine.row_unit),
            "n_seq_max": self.n_seq_max, "n_ctx": self.n_ctx, "n_gpu_layers": self.n_gpu_layers,
            "system_info": _engine.system_info().strip(),
        }

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._meta)

    @property
    def quant_type(self) -> str:
        ftype = self._meta.get("general.file_type")
        if ftype is not None and ftype.isdigit():
            return file_type_name(int(ftype))
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

    def render(self, messages: prompts.Messages, add_assistant: bool = True) -> str:
        """The prompt text of ``messages`` [(role, content)] in this model's prompt format
        (``prompt_format``); ``add_assistant`` ends it where the assistant speaks."""
        return prompts.render(self.prompt_format, self._engine, messages, add_assistant)

    def chat_text(self, user: str, system: str | None = None) -> str:
        """The prompt text of one user turn (after ``system``), ending where the assistant speaks."""
        return self.render(([("system", system)] if system else []) + [("user", user)])

    def prompt_ids(self, text: str) -> list[int]:
        """Token ids of prompt text (special tokens parsed), starting with the vocabulary's
        begin-of-sequence token when the model wants one and the text does not hold it."""
        ids = self.tokenize(text)
        bos = self._engine.bos
        if self._engine.add_bos and bos >= 0 and (not ids or ids[0] != bos):
            ids = [bos] + ids
        return ids

    def chat(self, user: str, system: str | None = None) -> list[int]:
        """Token ids of ``chat_text(user, system)``."""
        return self.prompt_ids(self.chat_text(user, system))

    def is_eog(self, token: int) -> bool:
        return bool(self._engine.is_eog(int(token)))

    # -- decoding ---------------------------------------------------------------------------

    def logits(self, ids: Sequence[int], inject: Iterable[Injection] = (), rows=None) -> np.ndarray:
        """Logits ``[n_rows, n_vocab]`` for ``rows`` of the prompt (default: the last row;
        ``"all"`` for every row)."""
        ids = check_ids(self, ids)
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
        return self.points(ids, [list(inject)], rows=rows)[0]

    def points(
        self,
        ids: Sequence[int],
        points: Sequence[Sequence[Injection]],
        vocab_ids: Sequence[int] | None = None,
        rows: Sequence[int] | None = None,
        stats: bool = False,
    ):
        """Run one prompt under many injections at once: ``[n_points, n_rows, n_cols]``.

        The prompt up to the first injected token (or the first requested row) is decoded
        once and shared; the rest is decoded for every point, up to ``n_seq_max`` points per
        engine call. ``vocab_ids`` gathers only those logits (in C++); ``rows`` defaults to the
        last. Returns ``[n_points, n_cols]`` when ``rows`` is None. ``stats=True`` returns
        ``(logits, stats)``, stats ``[n_points, (n_rows,) 3]`` float64: each row's
        full-vocabulary max, log-sum-exp and argmax, computed in C++ (with ``vocab_ids``, no row
        of n_vocab floats is copied out).
        """
        ids = check_ids(self, ids)
        n = len(ids)
        out_rows = [n - 1] if rows is None else list(rows)
        specs = [resolve(self, point, n) for point in points]
        if not out_rows:
            raise ValueError("rows is empty: pass the prompt indices whose logits you want (or None for the last)")
        if sorted(set(out_rows)) != out_rows or out_rows[0] < 0 or out_rows[-1] >= n:
            raise ValueError(f"rows must be increasing indices into the prompt (0..{n - 1})")
        first = first_injected([s for sp in specs for s in sp], out_rows[0]) if self.settings.reuse_prefix else 0
        gather = None if vocab_ids is None else check_vocab_ids(vocab_ids, self.n_vocab)
        n_cols = self.n_vocab if gather is None else len(gather)
        logits, st = self._decoder.points(ids, specs, first, out_rows, gather, n_cols, stats)
        if rows is None:
            logits, st = logits[:, 0, :], None if st is None else st[:, 0, :]
        return (logits, st) if stats else logits

    def score(self, ids, points: Sequence[Sequence[Injection]], continuations: Sequence[Sequence[int]]) -> np.ndarray:
        """Log-probabilities of continuations of a prompt under each point, as a prompt tree:
        float64 ``[n_points, n_continuations, max_len]``, entry [j, c, i] = log p(token i of
        continuation c | the prompt and tokens < i, under point j); NaN past a continuation's end.

        ids: one prompt for every point, or a list of prompts, one per point (they share their
        common beginning). Each point decodes its prompt from its first injected token once;
        each continuation branches from it (its KV cells are shared, not decoded again) and
        costs only its own tokens. Injections whose positions continue ("last", "all", an int
        k) also act on the continuation tokens, as in generation. The result equals decoding
        each prompt + continuation from scratch, bit for bit (batch invariance). Sum over the
        last axis (``np.nansum``) for a continuation's log-likelihood.
        """
        prompts = [ids] * len(points) if is_ids(ids) else list(ids)
        if len(prompts) != len(points):
            raise ValueError(f"{len(prompts)} prompts for {len(points)} points: give one prompt, or one per point")
        if not prompts:
            raise ValueError("no points given")
        prompts = [check_ids(self, p) for p in prompts]
        conts = [check_ids(self, c) for c in continuations]
        if not conts:
            raise ValueError("no continuations given: pass token-id lists to score")
        longest = max(len(p) for p in prompts) + max(len(c) for c in conts)
        if longest > self.n_ctx:
            raise ValueError(f"a prompt and its longest continuation ({longest} tokens) exceed the context "
                             f"({self.n_ctx}); load the model with a larger n_ctx")
        branches = [(p, resolve(self, point, len(p))) for p, point in zip(prompts, points)]
        first = min(min(first_injected(specs, len(p) - 1), common_length(p, prompts[0])) for p, specs in branches)
        return tree(self._decoder, branches, first, conts)

    def capture(
        self,
        ids: Sequence[int],
        layers: Sequence[int] | None = None,
        inject: Iterable[Injection] = (),
    ) -> np.ndarray:
        """Residual stream after each block in ``layers`` (default all), for every token:
        float32 ``[n_layers, n_tokens, n_embd]``. With ``inject``, captures see the injected
        values at and after the injected layer."""
        ids = check_ids(self, ids)
        return self._decoder.capture(ids, list(Layers.of(layers, self.n_layer)), resolve(self, list(inject), len(ids)))

    def capture_many(
        self,
        prompts: Sequence[Sequence[int]],
        layers: Sequence[int] | None = None,
        position: int = -1,
        progress=None,
    ) -> np.ndarray:
        """The residual stream at one token of each prompt, batched across prompts:
        float32 ``[n_prompts, n_layers, n_embd]``. ``position`` indexes each prompt (-1: last);
        ``progress`` as in ``pyintro.progress``."""
        prompts = [check_ids(self, p) for p in prompts]
        caps = self.capture_rows(prompts, [[position] for _ in prompts], layers, progress)
        out = np.empty((len(prompts), len(caps[0]) if caps else 0, self.n_embd), np.float32)
        for i, cap in enumerate(caps):
            out[i] = cap[:, 0]
        return out

    def capture_rows(self, prompts: Sequence[Sequence[int]], rows: Sequence[Sequence[int]],
                     layers: Sequence[int] | None = None, progress=None) -> list[np.ndarray]:
        """The residual stream at chosen tokens of each prompt (``rows[i]``: indices into
        prompt i, negative from the end), the prompts batched together: one float32
        ``[n_layers, len(rows[i]), n_embd]`` per prompt, bit-identical to ``capture`` alone."""
        il = list(Layers.of(layers, self.n_layer))
        prompts = [check_ids(self, p) for p in prompts]
        if len(rows) != len(prompts):
            raise ValueError(f"{len(rows)} row lists for {len(prompts)} prompts: give one per prompt")
        return self._decoder.capture_many(prompts, il, [prompt_rows(r, len(p)) for p, r in zip(prompts, rows)],
                                          progress)

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
        token. ``temperature=0`` is greedy; otherwise continuation j samples with the seed
        (seed, j), so it is the same alone or among others (``generate_many`` with those seeds).
        """
        most = self.n_seq_max - self._decoder.first_seq  # a recurrent model keeps sequence 0 for the prompt
        if n < 1 or n > most:
            raise ValueError(f"n must be between 1 and {most} (n_seq_max {self.n_seq_max})")
        seeds = [None if seed is None else [int(seed), j] for j in range(n)]
        return self.generate_many(ids, [list(inject)] * n, max_tokens, temperature, seeds, top_k, top_p)

    def generate_many(self, ids: Sequence[int], points: Sequence[Sequence[Injection]], max_tokens: int = 32,
                      temperature: float = 0.0, seeds=None, top_k: int = 0, top_p: float = 1.0) -> list[list[int]]:
        """One continuation of ``ids`` per point, each with its own injections (vector, layer,
        strength) and its own seed (``seeds[j]``: anything ``np.random.default_rng`` takes; None:
        fresh entropy), decoded together. A continuation depends only on its point and seed."""
        ids = check_ids(self, ids)
        most = self.n_seq_max - self._decoder.first_seq  # a recurrent model keeps sequence 0 for the prompt
        if not 1 <= len(points) <= most:
            raise ValueError(f"give between 1 and {most} points (n_seq_max {self.n_seq_max}), got {len(points)}")
        seeds = [None] * len(points) if seeds is None else list(seeds)
        if len(seeds) != len(points):
            raise ValueError(f"{len(seeds)} seeds for {len(points)} points: give one seed per point")
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if len(ids) + max_tokens > self.n_ctx:
            raise ValueError(f"prompt plus max_tokens exceeds the context ({self.n_ctx}); load with a larger n_ctx")
        samplers = [sampler(temperature, top_k, top_p, np.random.default_rng(s)) for s in seeds]
        specs = [resolve(self, list(p), len(ids)) for p in points]
        return generate(self._decoder, ids, specs, max_tokens, samplers, self.is_eog)

    def belief(self, ids: Sequence[int], inject: Iterable[Injection] = (), **kw):
        """The Yes/No belief at the last token of ``ids``; see ``pyintro.readout.belief``."""
        from pyintro.readout import belief

        return belief(self, ids, inject, **kw)


def points_per_call(model: Model, first: int, n_suffix: int) -> int:
    """How many points ``model.points`` decodes per engine call when the prompt before row
    ``first`` is shared and each point decodes ``n_suffix`` rows (for callers that write results
    one engine call at a time)."""
    return model._decoder.points_per_call(first, n_suffix)
