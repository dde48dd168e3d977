"""Type stub for pyintro's compiled core (csrc/bindings.cpp). Private: use pyintro.Model.

ValueError: bad input, nothing decoded. RuntimeError: llama.cpp failed, a wanted layer's
l_out-<il> did not fire exactly once, or the logits were not finite.

tests/test_engine_stub.py checks this file against the compiled module: the same names, and the
same parameters for every function and method.
"""

from typing import Sequence

import numpy as np
import numpy.typing as npt

MAX_SEQ: int  # the most sequences a caller may use (llama.cpp's limit minus one padding sequence)

class EngineDebug:
    """The engine's test seams; with their defaults they change nothing."""

    force_transfer: bool  # the GPU path's tensor_get/set even for host tensors
    transfers: int  # tensor_get/set calls made (settable, to reset)
    layer_prefix: str  # the layer outputs' tensor names: <layer_prefix><il>
    def __init__(self) -> None: ...

class EngineParams:
    path: str
    n_gpu_layers: int
    n_threads: int
    n_ctx: int
    n_seq_max: int
    n_batch: int
    row_unit: int  # pad each llama_decode call's rows and outputs to a multiple of this
    eval_callback: bool
    flash_attn: bool
    debug: EngineDebug  # the test seams' initial values
    def __init__(self) -> None: ...

class Engine:
    """Owns one llama_model, llama_context and llama_batch; close() frees them."""

    def __init__(self, params: EngineParams) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def n_layer(self) -> int: ...
    @property
    def n_embd(self) -> int: ...
    @property
    def n_vocab(self) -> int: ...
    @property
    def n_ctx(self) -> int: ...
    @property
    def n_seq_max(self) -> int: ...
    @property
    def n_batch(self) -> int: ...
    @property
    def row_unit(self) -> int: ...
    @property
    def flash_attn(self) -> bool: ...
    @property
    def arch(self) -> str: ...
    @property
    def desc(self) -> str: ...
    @property
    def chat_template(self) -> str: ...
    @property
    def recurrent(self) -> bool: ...  # a recurrent (Mamba, RWKV) or hybrid memory: calls padded by sequence
    def metadata(self) -> list[tuple[str, str]]: ...
    def is_eog(self, token: int) -> bool: ...
    @property
    def bos(self) -> int: ...  # -1: none
    @property
    def eos(self) -> int: ...
    @property
    def add_bos(self) -> bool: ...
    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]: ...
    def detokenize(self, tokens: Sequence[int], remove_special: bool = False, unparse_special: bool = True) -> bytes: ...
    def token_piece(self, token: int) -> bytes: ...
    def apply_chat_template(self, messages: Sequence[tuple[str, str]], add_assistant: bool = True,
                            template: str = "") -> str: ...
    def decode(
        self,
        tokens: npt.ArrayLike,
        pos: npt.ArrayLike,
        seq: npt.ArrayLike,
        output: npt.ArrayLike,
        inject: list[tuple[int, npt.ArrayLike, npt.ArrayLike]] = ...,
        capture_layers: npt.ArrayLike = ...,
        capture_rows: npt.ArrayLike = ...,
        gather_ids: npt.ArrayLike | None = None,
        logits: bool = True,
        stats: bool = False,
        fast_head: bool = False,
    ) -> tuple[np.ndarray, ...]:
        """(logits [n_outputs, n_cols], capture [n_capture_layers, n_capture_rows, n_embd]), and
        with stats a third array [n_outputs, 3] float64 (each row's full-vocabulary max,
        log-sum-exp, argmax); n_cols is len(gather_ids), or n_vocab when gather_ids is None or
        empty; logits=False copies none out ([0, 0]). fast_head: compute the gathered logits from
        the final norm's rows and the head set by set_head (gather_ids must equal its ids)."""
    def set_head(self, ids: npt.ArrayLike, scale: float = 1.0, softcap: float = 0.0) -> None:
        """Read the output matrix's rows (and output bias) for ``ids`` from the model file, for
        decode(fast_head=True); ValueError where the file has no such matrix."""
    @property
    def last_calls(self) -> int: ...  # llama_decode calls of the last decode()
    @property
    def debug(self) -> EngineDebug: ...  # the live test seams, changed in place
    def memory_clear(self) -> None: ...
    def seq_rm(self, seq: int, p0: int, p1: int) -> bool: ...
    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None: ...
    def seq_pos_max(self, seq: int) -> int: ...
    def seq_state_bytes(self, seq: int) -> int: ...  # llama_state_seq_get_size: recurrent state and KV cells

def log_drain() -> list[tuple[int, str]]: ...
def log_install() -> None: ...
def supports_gpu_offload() -> bool: ...
def backend_devices() -> list[list[str]]: ...
def system_info() -> str: ...
def builtin_templates() -> list[str]: ...
