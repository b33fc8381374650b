"""gdn's calls as PyTorch custom ops (torch.library), with fake-tensor
implementations, so torch.compile traces through them and CUDA graphs can
capture them. Importing this module imports PyTorch; `import gdn` does not.

The functions here take and return torch tensors with the signatures of the
gdn package's functions. Under torch.compile (and for fake or other tensor
subclasses) they call the registered ops; plain eager calls run the same
function directly, without the dispatcher's per-call cost. For CUDA tensors no host copy of cu_seqlens or
state_indices is made (that would synchronise the stream): their values are
checked on the device.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor

import gdn as _gdn

__all__ = ["chunk_gated_delta_rule", "recurrent_update", "verify", "commit_states"]


def _host_checks(t: Tensor) -> bool:
    return not t.is_cuda


def _scale(scale: float):
    return None if scale == 0.0 else scale


def _direct(x: Tensor) -> bool:
    """Whether a call may skip the PyTorch dispatcher: plain eager tensors
    outside torch.compile run the function behind each custom op directly,
    which saves the op's per-call dispatch cost (scripts/py_overhead.py
    measures it); traced, fake and other subclassed tensors take the op."""
    return type(x) is Tensor and not torch.compiler.is_compiling()


def _state_dims(n: int, hv: int, k: int, v: int, state_v_first: bool):
    return (n, hv, v, k) if state_v_first else (n, hv, k, v)


def _prefill_impl(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, cu_seqlens: Tensor,
                  initial_state: Optional[Tensor], A_log: Optional[Tensor], dt_bias: Optional[Tensor], scale: float,
                  use_qk_l2norm_in_kernel: bool, state_v_first: bool,
                  output_final_state: bool) -> Tuple[Tensor, Tensor]:
    o, final = _gdn.chunk_gated_delta_rule(
        q, k, v, g, beta, scale=_scale(scale), initial_state=initial_state, output_final_state=output_final_state,
        use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel, cu_seqlens=cu_seqlens, state_v_first=state_v_first,
        A_log=A_log, dt_bias=dt_bias, _host_checks=_host_checks(q))
    return o, final if final is not None else q.new_empty(0, dtype=torch.float32)


_prefill = torch.library.custom_op("gdn::prefill", _prefill_impl, mutates_args=())


@_prefill.register_fake
def _(q, k, v, g, beta, cu_seqlens, initial_state, A_log, dt_bias, scale, use_qk_l2norm_in_kernel, state_v_first,
      output_final_state):
    if not output_final_state:
        return v.new_empty(v.shape), q.new_empty(0, dtype=torch.float32)
    dtype = initial_state.dtype if initial_state is not None else torch.float32
    dims = _state_dims(cu_seqlens.shape[0] - 1, v.shape[2], q.shape[3], v.shape[3], state_v_first)
    return v.new_empty(v.shape), q.new_empty(dims, dtype=dtype)


def _prefill_into_pool_impl(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, cu_seqlens: Tensor,
                            pool: Tensor, state_indices: Tensor, A_log: Optional[Tensor], dt_bias: Optional[Tensor], scale: float,
                            use_qk_l2norm_in_kernel: bool, state_v_first: bool) -> Tensor:
    o, _ = _gdn.chunk_gated_delta_rule(
        q, k, v, g, beta, scale=_scale(scale), initial_state=pool, use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel,
        cu_seqlens=cu_seqlens, state_v_first=state_v_first, state_indices=state_indices, A_log=A_log,
        dt_bias=dt_bias, _host_checks=_host_checks(q))
    return o


_prefill_into_pool = torch.library.custom_op("gdn::prefill_into_pool", _prefill_into_pool_impl,
                                             mutates_args=("pool",))


@_prefill_into_pool.register_fake
def _(q, k, v, g, beta, cu_seqlens, pool, state_indices, A_log, dt_bias, scale, use_qk_l2norm_in_kernel,
      state_v_first):
    return v.new_empty(v.shape)


def _recurrent_update_impl(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, state: Tensor,
                           state_indices: Optional[Tensor], A_log: Optional[Tensor], dt_bias: Optional[Tensor],
                           scale: float, use_qk_l2norm_in_kernel: bool, state_v_first: bool) -> Tensor:
    o = _gdn.recurrent_update(q, k, v, g, beta, state, state_indices=state_indices, scale=_scale(scale),
                              use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel, state_v_first=state_v_first,
                              A_log=A_log, dt_bias=dt_bias, _host_checks=_host_checks(q))
    return o.reshape(v.shape)


_recurrent_update = torch.library.custom_op("gdn::recurrent_update", _recurrent_update_impl,
                                            mutates_args=("state",))


@_recurrent_update.register_fake
def _(q, k, v, g, beta, state, state_indices, A_log, dt_bias, scale, use_qk_l2norm_in_kernel, state_v_first):
    return v.new_empty(v.shape)


def _verify_impl(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, state: Tensor,
                 state_indices: Optional[Tensor], cu_seqlens: Optional[Tensor], A_log: Optional[Tensor],
                 dt_bias: Optional[Tensor], scale: float, use_qk_l2norm_in_kernel: bool, state_v_first: bool,
                 output_intermediate_states: bool, update_state: bool) -> Tuple[Tensor, Tensor]:
    o, inter = _gdn.verify(q, k, v, g, beta, state, state_indices=state_indices, cu_seqlens=cu_seqlens,
                           scale=_scale(scale), use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel,
                           state_v_first=state_v_first, A_log=A_log, dt_bias=dt_bias,
                           output_intermediate_states=output_intermediate_states, update_state=update_state,
                           _host_checks=_host_checks(q), _slots=None if cu_seqlens is None else 16)
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
    _gdn.commit_states(intermediate_states, accepted, pool, state_indices, _host_checks=_host_checks(pool))


_commit_states = torch.library.custom_op("gdn::commit_states", _commit_states_impl, mutates_args=("pool",))


@_commit_states.register_fake
def _(intermediate_states, accepted, pool, state_indices):
    return None


def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
                           use_qk_l2norm_in_kernel=False, cu_seqlens=None, state_v_first=False,
                           state_indices=None, A_log=None, dt_bias=None):
    """gdn.chunk_gated_delta_rule as custom ops. Returns (o, final_state);
    with state_indices the pool is updated in place and returned."""
    B, T = q.shape[0], q.shape[1]
    if cu_seqlens is None:
        cu_seqlens = torch.arange(0, (B + 1) * T, T, dtype=torch.int32, device=q.device)
        q, k, v, g, beta = (x.reshape((1, B * T) + tuple(x.shape[2:])) for x in (q, k, v, g, beta))
    s = 0.0 if scale is None else float(scale)
    if state_indices is not None:
        if initial_state is None:
            raise ValueError("initial_state: the state pool is required with state_indices")
        op = _prefill_into_pool_impl if _direct(q) else _prefill_into_pool
        o = op(q, k, v, g, beta, cu_seqlens, initial_state, state_indices, A_log, dt_bias, s,
               use_qk_l2norm_in_kernel, state_v_first)
        final = initial_state
    else:
        op = _prefill_impl if _direct(q) else _prefill
        o, final = op(q, k, v, g, beta, cu_seqlens, initial_state, A_log, dt_bias, s, use_qk_l2norm_in_kernel,
                      state_v_first, output_final_state)
        final = final if output_final_state else None
    return o.reshape((B, T) + tuple(o.shape[2:])), final


def recurrent_update(q, k, v, g, beta, state, state_indices=None, scale=None, use_qk_l2norm_in_kernel=False,
                     state_v_first=False, A_log=None, dt_bias=None):
    """gdn.recurrent_update as a custom op (eager calls skip the dispatcher,
    see _direct); o has v's shape."""
    op = _recurrent_update_impl if _direct(q) else _recurrent_update
    return op(q, k, v, g, beta, state, state_indices, A_log, dt_bias, 0.0 if scale is None else float(scale),
              use_qk_l2norm_in_kernel, state_v_first)


def verify(q, k, v, g, beta, state, state_indices=None, cu_seqlens=None, scale=None, use_qk_l2norm_in_kernel=False,
           state_v_first=False, A_log=None, dt_bias=None, output_intermediate_states=True, update_state=False):
    """gdn.verify as a custom op. Returns (o, intermediate_states or None)."""
    op = _verify_impl if _direct(q) else _verify
    o, inter = op(q, k, v, g, beta, state, state_indices, cu_seqlens, A_log, dt_bias,
                  0.0 if scale is None else float(scale), use_qk_l2norm_in_kernel, state_v_first,
                  output_intermediate_states, update_state)
    return o, inter if output_intermediate_states else None


def commit_states(intermediate_states, accepted, pool, state_indices):
    """gdn.commit_states as a custom op: pool[state_indices[n]] =
    intermediate_states[n, accepted[n]] where both are >= 0, in place.
    Returns the pool."""
    op = _commit_states_impl if _direct(pool) else _commit_states
    op(intermediate_states, accepted, pool, state_indices)
    return pool
