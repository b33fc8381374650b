"""gdn's calls as PyTorch custom ops (torch.library), with fake-tensor
implementations, so torch.compile traces through them and CUDA graphs can
capture them. Importing this module imports PyTorch; `import gdn` does not.

The functions here take and return torch tensors with the signatures of the
gdn package's functions. Under torch.compile (and for fake or other tensor
subclasses) they call the registered ops; plain eager calls run the same
function directly, without the dispatcher's per-call cost. No host copy of
cu_seqlens or state_indices is made (for CUDA tensors that would
synchronise the stream): the library reads CPU tensors' values itself and
checks CUDA tensors' values on the device, unless the caller passes
cu_seqlens_cpu (the prefill's bounds on the host) or the batch rows imply them.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor

import gdn as _gdn
from gdn import _decode as _pkg_decode
from gdn import _gdn as _ext
from gdn import _host_copy_of
from gdn import _prefill as _pkg_prefill
from gdn import _verify as _pkg_verify

__all__ = ["chunk_gated_delta_rule", "recurrent_update", "verify", "commit_states"]


try:
    import numpy as _np  # host copies of batch-row bounds (a CPU tensor without it)
except ImportError:  # pragma: no cover
    _np = None

_TORCH = _gdn._FRAMEWORKS.setdefault(Tensor, _gdn._Torch())
# Each wrapper below runs the package's call directly when `type(q) is
# Tensor and not _is_compiling()` (plain eager tensors), saving the
# dispatcher's per-call cost (scripts/py_overhead.py measures it); traced,
# fake and other subclassed tensors take the registered op.
_is_compiling = torch.compiler.is_compiling


def _state_dims(n: int, hv: int, k: int, v: int, state_v_first: bool):
    return (n, hv, v, k) if state_v_first else (n, hv, k, v)


def _check_packed(q: Tensor):
    if q.shape[0] != 1:
        raise ValueError(f"q: with cu_seqlens the batch dimension must be 1, got {q.shape[0]}")


def _cu_host(cu_seqlens_cpu: Optional[Tensor], cu_seqlens: Tensor):
    """cu_seqlens_cpu as the host copy the library reads (the package's rule)."""
    return None if cu_seqlens_cpu is None else _host_copy_of(cu_seqlens_cpu, cu_seqlens, "cu_seqlens_cpu")


def _host_range(B: int, T: int):
    """[0, T, ..., B T] on the host (int32, cu_seqlens' dtype for batch rows)."""
    if _np is not None:
        return _np.arange(0, (B + 1) * T, T, dtype=_np.int32)
    return torch.arange(0, (B + 1) * T, T, dtype=torch.int32)


def _prefill_impl(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, cu_seqlens: Tensor,
                  initial_state: Optional[Tensor], A_log: Optional[Tensor], dt_bias: Optional[Tensor], scale: float,
                  use_qk_l2norm_in_kernel: bool, state_v_first: bool, output_final_state: bool,
                  cu_seqlens_cpu: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    _check_packed(q)
    o, final = _pkg_prefill(_TORCH, q, k, v, g, beta, cu_seqlens, _cu_host(cu_seqlens_cpu, cu_seqlens), scale,
                            initial_state, output_final_state,
                            use_qk_l2norm_in_kernel, state_v_first, None, None, A_log, dt_bias, 0, None, "auto", False)
    return o, final if final is not None else q.new_empty(0, dtype=torch.float32)


_prefill = torch.library.custom_op("gdn::prefill", _prefill_impl, mutates_args=())


@_prefill.register_fake
def _(q, k, v, g, beta, cu_seqlens, initial_state, A_log, dt_bias, scale, use_qk_l2norm_in_kernel, state_v_first,
      output_final_state, cu_seqlens_cpu):
    if not output_final_state:
        return v.new_empty(v.shape), q.new_empty(0, dtype=torch.float32)
    dtype = initial_state.dtype if initial_state is not None else torch.float32
    dims = _state_dims(cu_seqlens.shape[0] - 1, v.shape[2], q.shape[3], v.shape[3], state_v_first)
    return v.new_empty(v.shape), q.new_empty(dims, dtype=dtype)


def _prefill_into_pool_impl(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, cu_seqlens: Tensor,
                            pool: Tensor, state_indices: Tensor, A_log: Optional[Tensor], dt_bias: Optional[Tensor], scale: float,
                            use_qk_l2norm_in_kernel: bool, state_v_first: bool,
                            cu_seqlens_cpu: Optional[Tensor]) -> Tensor:
    _check_packed(q)
    o, _ = _pkg_prefill(_TORCH, q, k, v, g, beta, cu_seqlens, _cu_host(cu_seqlens_cpu, cu_seqlens), scale, pool,
                        True, use_qk_l2norm_in_kernel,
                        state_v_first, state_indices, None, A_log, dt_bias, 0, None, "auto", False)
    return o


_prefill_into_pool = torch.library.custom_op("gdn::prefill_into_pool", _prefill_into_pool_impl,
                                             mutates_args=("pool",))


@_prefill_into_pool.register_fake
def _(q, k, v, g, beta, cu_seqlens, pool, state_indices, A_log, dt_bias, scale, use_qk_l2norm_in_kernel,
      state_v_first, cu_seqlens_cpu):
    return v.new_empty(v.shape)


def _recurrent_update_impl(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, state: Tensor,
                           state_indices: Optional[Tensor], A_log: Optional[Tensor], dt_bias: Optional[Tensor],
                           scale: float, use_qk_l2norm_in_kernel: bool, state_v_first: bool) -> Tensor:
    return _pkg_decode(_TORCH, q, k, v, g, beta, state, state_indices, None, scale, use_qk_l2norm_in_kernel,
                       state_v_first, A_log, dt_bias, "auto", False)


_recurrent_update = torch.library.custom_op("gdn::recurrent_update", _recurrent_update_impl,
                                            mutates_args=("state",))


@_recurrent_update.register_fake
def _(q, k, v, g, beta, state, state_indices, A_log, dt_bias, scale, use_qk_l2norm_in_kernel, state_v_first):
    return v.new_empty(v.shape)


def _verify_impl(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, state: Tensor,
                 state_indices: Optional[Tensor], cu_seqlens: Optional[Tensor], A_log: Optional[Tensor],
                 dt_bias: Optional[Tensor], scale: float, use_qk_l2norm_in_kernel: bool, state_v_first: bool,
                 output_intermediate_states: bool, update_state: bool) -> Tuple[Tensor, Tensor]:
    o, inter = _pkg_verify(_TORCH, q, k, v, g, beta, state, state_indices, None, cu_seqlens, None,
                           q.shape[1] if cu_seqlens is None else 16, scale, use_qk_l2norm_in_kernel, state_v_first,
                           A_log, dt_bias, output_intermediate_states, update_state, "auto", False)
    return o, inter if inter is not None else q.new_empty(0, dtype=state.dtype)


_verify = torch.library.custom_op("gdn::verify", _verify_impl, mutates_args=("state",))


@_verify.register_fake
def _(q, k, v, g, beta, state, state_indices, cu_seqlens, A_log, dt_bias, scale, use_qk_l2norm_in_kernel,
      state_v_first, output_intermediate_states, update_state):
    if not output_intermediate_states:
        return v.new_empty(v.shape), q.new_empty(0, dtype=state.dtype)
    if cu_seqlens is None:
        n, slots = q.shape[0], q.shape[1]
    else:
        n, slots = cu_seqlens.shape[0] - 1, 16  # packed drafts: room for the longest allowed
    hv, kd, vd = v.shape[2], q.shape[3], v.shape[3]
    dims = (n, slots) + _state_dims(1, hv, kd, vd, state_v_first)[1:]
    return v.new_empty(v.shape), q.new_empty(dims, dtype=state.dtype)


def _commit_states_impl(intermediate_states: Tensor, accepted: Tensor, pool: Tensor, state_indices: Tensor) -> None:
    _ext.commit(intermediate_states, accepted, pool, state_indices, "auto", False, _TORCH.stream(pool), None, None)


_commit_states = torch.library.custom_op("gdn::commit_states", _commit_states_impl, mutates_args=("pool",))


@_commit_states.register_fake
def _(intermediate_states, accepted, pool, state_indices):
    return None


def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
                           use_qk_l2norm_in_kernel=False, cu_seqlens=None, state_v_first=False,
                           state_indices=None, A_log=None, dt_bias=None, cu_seqlens_cpu=None):
    """gdn.chunk_gated_delta_rule as custom ops. Returns (o, final_state);
    with state_indices the pool is updated in place and returned.
    cu_seqlens_cpu (a CPU tensor equal to cu_seqlens, as flash-linear-attention
    takes it) lets the call plan and check from the host without a
    synchronisation (under torch.compile a CPU input keeps inductor from
    capturing the graph in CUDA graphs)."""
    if state_indices is not None and initial_state is None:
        raise ValueError("initial_state: the state pool is required with state_indices")
    s = 0.0 if scale is None else float(scale)
    if type(q) is Tensor and not _is_compiling():
        # Eager: the batch rows stay (the extension folds them into the tokens).
        if cu_seqlens is None:  # batch rows: the host knows the bounds
            B, T = q.shape[:2]
            cu_seqlens = torch.arange(0, (B + 1) * T, T, dtype=torch.int32, device=q.device)
            cu_host = _host_range(B, T)
        else:
            _check_packed(q)
            cu_host = _cu_host(cu_seqlens_cpu, cu_seqlens)
        return _pkg_prefill(_TORCH, q, k, v, g, beta, cu_seqlens, cu_host, s, initial_state, output_final_state,
                            use_qk_l2norm_in_kernel, state_v_first, state_indices, None, A_log, dt_bias, 0, None,
                            "auto", False)
    B, T = q.shape[0], q.shape[1]
    if cu_seqlens is None:
        cu_seqlens = torch.arange(0, (B + 1) * T, T, dtype=torch.int32, device=q.device)
        q, k, v, g, beta = (x.reshape((1, B * T) + tuple(x.shape[2:])) for x in (q, k, v, g, beta))
    if state_indices is not None:
        o = _prefill_into_pool(q, k, v, g, beta, cu_seqlens, initial_state, state_indices, A_log, dt_bias, s,
                               use_qk_l2norm_in_kernel, state_v_first, cu_seqlens_cpu)
        final = initial_state
    else:
        o, final = _prefill(q, k, v, g, beta, cu_seqlens, initial_state, A_log, dt_bias, s, use_qk_l2norm_in_kernel,
                            state_v_first, output_final_state, cu_seqlens_cpu)
        final = final if output_final_state else None
    return o.reshape((B, T) + tuple(o.shape[2:])), final


def recurrent_update(q, k, v, g, beta, state, state_indices=None, scale=None, use_qk_l2norm_in_kernel=False,
                     state_v_first=False, A_log=None, dt_bias=None):
    """gdn.recurrent_update as a custom op; o has v's shape."""
    s = 0.0 if scale is None else float(scale)
    if type(q) is Tensor and not _is_compiling():
        return _pkg_decode(_TORCH, q, k, v, g, beta, state, state_indices, None, s, use_qk_l2norm_in_kernel,
                           state_v_first, A_log, dt_bias, "auto", False)
    return _recurrent_update(q, k, v, g, beta, state, state_indices, A_log, dt_bias, s, use_qk_l2norm_in_kernel,
                             state_v_first)


def verify(q, k, v, g, beta, state, state_indices=None, cu_seqlens=None, scale=None, use_qk_l2norm_in_kernel=False,
           state_v_first=False, A_log=None, dt_bias=None, output_intermediate_states=True, update_state=False):
    """gdn.verify as a custom op. Returns (o, intermediate_states or None)."""
    s = 0.0 if scale is None else float(scale)
    if type(q) is Tensor and not _is_compiling():
        return _pkg_verify(_TORCH, q, k, v, g, beta, state, state_indices, None, cu_seqlens, None,
                           q.shape[1] if cu_seqlens is None else 16, s, use_qk_l2norm_in_kernel, state_v_first,
                           A_log, dt_bias, output_intermediate_states, update_state, "auto", False)
    o, inter = _verify(q, k, v, g, beta, state, state_indices, cu_seqlens, A_log, dt_bias, s,
                       use_qk_l2norm_in_kernel, state_v_first, output_intermediate_states, update_state)
    return o, inter if output_intermediate_states else None


def commit_states(intermediate_states, accepted, pool, state_indices):
    """gdn.commit_states as a custom op: pool[state_indices[n]] =
    intermediate_states[n, accepted[n]] where both are >= 0, in place.
    Returns the pool."""
    if type(pool) is Tensor and not _is_compiling():
        _commit_states_impl(intermediate_states, accepted, pool, state_indices)
    else:
        _commit_states(intermediate_states, accepted, pool, state_indices)
    return pool
