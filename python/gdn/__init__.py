"""gdn: Gated DeltaNet linear-attention kernels for LLM inference.

The calls take and return arrays of the framework that holds the data
(NumPy on the CPU; PyTorch or CuPy on the GPU), run on the device that holds
them and, for PyTorch, on the caller's current CUDA stream. Importing gdn
does not import PyTorch.

    o, final_state = gdn.chunk_gated_delta_rule(q, k, v, g, beta,
                                                initial_state=h0, output_final_state=True,
                                                use_qk_l2norm_in_kernel=True, cu_seqlens=cu)

Speculative decoding: verify the drafts with the pool left untouched, then
commit each sequence's accepted prefix:

    o, states = gdn.verify(q, k, v, g, beta, pool, state_indices=slots)
    gdn.commit_states(states, accepted, pool, slots)  # pool[slots[n]] = states[n, accepted[n]]

Shapes follow flash-linear-attention: q, k [B, T, H, K], v [B, T, HV, V],
g, beta [B, T, HV], B == 1 with cu_seqlens [N + 1]; states [N, HV, K, V]
([N, HV, V, K] with state_v_first). Errors raise ValueError (bad arguments,
with the library's message naming the argument and the rule) or
RuntimeError.
"""

from . import _gdn

__all__ = ["chunk_gated_delta_rule", "recurrent_update", "verify", "commit_states", "version", "device_count"]

_PREFILL, _DECODE, _VERIFY = 0, 1, 2


def version():
    """The library version and the commit it was built from."""
    return _gdn.version()


def device_count():
    """CUDA devices the library sees (0 without CUDA)."""
    return _gdn.device_count()


def _is_torch(x):
    return type(x).__module__.split(".")[0] == "torch"


def _empty(like, shape, dtype=None):
    """An uninitialised array of `shape` on `like`'s device, in its framework."""
    if _is_torch(like):
        import torch

        return torch.empty(shape, dtype=like.dtype if dtype is None else dtype, device=like.device)
    mod = __import__(type(like).__module__.split(".")[0])
    return mod.empty(shape, dtype=like.dtype if dtype is None else dtype)


def _float32(like):
    if _is_torch(like):
        import torch

        return torch.float32
    return __import__(type(like).__module__.split(".")[0]).float32


def _int32_range(like, n, step):
    """[0, step, 2 step, ..., n step] as int32 on like's device, plus a host copy."""
    import numpy as np

    host = (np.arange(n + 1, dtype=np.int32) * step).astype(np.int32)
    if _is_torch(like):
        import torch

        return torch.from_numpy(host).to(like.device), host
    if type(like).__module__.split(".")[0] == "numpy":
        return host, host
    mod = __import__(type(like).__module__.split(".")[0])
    return mod.asarray(host), host


def _host_copy(x):
    """A NumPy copy of a small index array (for the library's value checks)."""
    if x is None:
        return None
    if _is_torch(x):
        return x.detach().cpu().numpy()
    if type(x).__module__.split(".")[0] == "numpy":
        return x
    return x.get() if hasattr(x, "get") else None


def _stream(x):
    if _is_torch(x) and x.is_cuda:
        import torch

        return torch.cuda.current_stream(x.device).cuda_stream
    return 0


def _flat(x, name, rank):
    """x with its leading batch dimensions folded into tokens."""
    if x.ndim == rank:
        return x
    if x.ndim == rank + 1:
        return x.reshape((x.shape[0] * x.shape[1],) + tuple(x.shape[2:]))
    raise ValueError(f"{name}: expected {rank} or {rank + 1} dimensions, got shape {tuple(x.shape)}")


_TORCH_CODES = None  # torch dtype -> gdn::DType value, filled on first use


def _raw(x):
    """A PyTorch tensor as the extension's raw descriptor (pointer, dtype,
    shape, strides, device): no DLPack capsule, about 5x cheaper per tensor.
    Anything else (and a dtype gdn does not take) passes through as is, to
    the DLPack path and its error messages."""
    global _TORCH_CODES
    if not _is_torch(x):
        return x
    if _TORCH_CODES is None:
        import torch

        codes = _gdn.dtype_codes()
        _TORCH_CODES = {torch.float32: codes["fp32"], torch.float16: codes["fp16"], torch.bfloat16: codes["bf16"],
                        torch.int32: codes["int32"], torch.int64: codes["int64"]}
    code = _TORCH_CODES.get(x.dtype)
    if code is None:
        return x
    if x.is_cuda:
        device = (2, x.get_device())  # DLPack kDLCUDA
    elif x.device.type == "cpu":
        device = (1, 0)  # kDLCPU
    else:
        return x
    return (x.data_ptr(), code, tuple(x.shape), x.stride()) + device


def _run(op, tensors, *, scale, l2norm, fused, state_v_first, write_final, tokens_per_seq=0,
         checkpoint_every=0, backend="auto", strict=False, cu_host=None, idx_host=None):
    ref = tensors["q"]
    _gdn.run(op, {k: _raw(v) for k, v in tensors.items() if v is not None},
             0.0 if scale is None else float(scale), bool(l2norm), bool(fused), bool(state_v_first),
             bool(write_final), int(checkpoint_every), int(tokens_per_seq), backend, bool(strict),
             _stream(ref), cu_host, idx_host)


def _gates(g, beta, A_log, dt_bias, rank):
    """Log-space (g, beta), or raw (a, b) when A_log and dt_bias are given."""
    fused = A_log is not None or dt_bias is not None
    if fused:
        return {"a": _flat(g, "g", rank), "b": _flat(beta, "beta", rank), "A_log": A_log, "dt_bias": dt_bias}, True
    return {"g": _flat(g, "g", rank), "beta": _flat(beta, "beta", rank)}, False


def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
                           use_qk_l2norm_in_kernel=False, cu_seqlens=None, state_v_first=False,
                           state_indices=None, A_log=None, dt_bias=None, checkpoint_every=0,
                           checkpoints=None, backend="auto", strict=False, _host_checks=True):
    """Chunked prefill. Returns (o, final_state).

    q, k: [B, T, H, K]; v: [B, T, HV, V]; g, beta: [B, T, HV] (with A_log and
    dt_bias [HV], g and beta are the raw gate inputs a and b:
    g = -exp(A_log) * softplus(a + dt_bias), beta = sigmoid(b)). With
    cu_seqlens [N + 1], B == 1 and the sequences are packed; without it, each
    batch row is one sequence. initial_state: [N, HV, K, V] ([N, HV, V, K]
    with state_v_first), or with state_indices [N] the state pool [P, ...]
    updated in place (negative index: start from zero, write nothing); the
    pool is then returned as final_state. checkpoints: [C, HV, K, V] written
    every checkpoint_every tokens (a multiple of 64).
    """
    B, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    if cu_seqlens is None:
        N = B
        cu, cu_host = _int32_range(q, B, T)
    else:
        if B != 1:
            raise ValueError(f"q: with cu_seqlens the batch dimension must be 1, got {B}")
        cu, cu_host = cu_seqlens, _host_copy(cu_seqlens) if _host_checks else None
        N = cu_seqlens.shape[0] - 1
    t = {"q": _flat(q, "q", 3), "k": _flat(k, "k", 3), "v": _flat(v, "v", 3), "cu_seqlens": cu}
    gates, fused = _gates(g, beta, A_log, dt_bias, 2)
    t.update(gates)
    o = _empty(v, (B * T, HV, V))
    t["out"] = o
    final = None
    if state_indices is not None:
        if initial_state is None:
            raise ValueError("initial_state: the state pool is required with state_indices")
        t["initial_state"], t["state_indices"] = initial_state, state_indices
        final = initial_state
        write = True
    else:
        t["initial_state"] = initial_state
        write = bool(output_final_state)
        if write:
            dims = (N, HV, V, K) if state_v_first else (N, HV, K, V)
            sdtype = initial_state.dtype if initial_state is not None else _float32(q)
            final = _empty(q, dims, sdtype)
            t["final_state"] = final
    if checkpoints is not None:
        t["checkpoints"] = checkpoints
    _run(_PREFILL, t, scale=scale, l2norm=use_qk_l2norm_in_kernel, fused=fused, state_v_first=state_v_first,
         write_final=write, checkpoint_every=checkpoint_every, backend=backend, strict=strict, cu_host=cu_host,
         idx_host=_host_copy(state_indices) if _host_checks else None)
    return o.reshape((B, T, HV, V)), final


def recurrent_update(q, k, v, g, beta, state, state_indices=None, scale=None, use_qk_l2norm_in_kernel=False,
                     state_v_first=False, A_log=None, dt_bias=None, backend="auto", strict=False, _host_checks=True):
    """Decode: one token per sequence, the state updated in place.

    q, k: [N, H, K] (or [N, 1, H, K]); v: [N, HV, V]; g, beta: [N, HV].
    state: a pool [P, HV, K, V] addressed by state_indices [N] (negative:
    padding, no read, no write), or [N, HV, K, V] without state_indices.
    Returns o [N, HV, V].
    """
    qf, kf, vf = _flat(q, "q", 3), _flat(k, "k", 3), _flat(v, "v", 3)
    t = {"q": qf, "k": kf, "v": vf}
    gates, fused = _gates(g, beta, A_log, dt_bias, 2)
    t.update(gates)
    o = _empty(v, tuple(vf.shape))
    t["out"] = o
    t["initial_state"] = state
    if state_indices is not None:
        t["state_indices"] = state_indices
    else:
        t["final_state"] = state
    _run(_DECODE, t, scale=scale, l2norm=use_qk_l2norm_in_kernel, fused=fused, state_v_first=state_v_first,
         write_final=True, backend=backend, strict=strict,
         idx_host=_host_copy(state_indices) if _host_checks else None)
    return o


def verify(q, k, v, g, beta, state, state_indices=None, cu_seqlens=None, scale=None,
           use_qk_l2norm_in_kernel=False, state_v_first=False, A_log=None, dt_bias=None,
           output_intermediate_states=True, update_state=False, backend="auto", strict=False, _host_checks=True,
           _slots=None):
    """Speculative verify: up to 16 draft tokens per sequence.

    q, k: [N, L, H, K] (fixed length L) or [1, T, H, K] with cu_seqlens.
    Returns (o, intermediate_states): o like v; intermediate_states
    [N, L, HV, K, V] ([.., V, K] with state_v_first), the state after each
    token, when asked. With update_state the pool (or dense state) takes
    each sequence's final state; otherwise it is left untouched.
    """
    B, L, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    t = {"q": _flat(q, "q", 3), "k": _flat(k, "k", 3), "v": _flat(v, "v", 3)}
    gates, fused = _gates(g, beta, A_log, dt_bias, 2)
    t.update(gates)
    cu_host, tokens = None, 0
    if cu_seqlens is not None:
        t["cu_seqlens"], cu_host = cu_seqlens, _host_copy(cu_seqlens) if _host_checks else None
        N = cu_seqlens.shape[0] - 1
        slots = int(max(cu_host[1:] - cu_host[:-1])) if cu_host is not None and N > 0 else 16
        slots = slots if _slots is None else _slots
    else:
        N, tokens, slots = B, L, L
    o = _empty(v, (B * L, HV, V))
    t["out"] = o
    t["initial_state"] = state
    if state_indices is not None:
        t["state_indices"] = state_indices
    elif update_state:
        t["final_state"] = state
    inter = None
    if output_intermediate_states:
        dims = (N, max(slots, 1), HV, V, K) if state_v_first else (N, max(slots, 1), HV, K, V)
        inter = _empty(q, dims, state.dtype)
        t["intermediate_states"] = inter
    _run(_VERIFY, t, scale=scale, l2norm=use_qk_l2norm_in_kernel, fused=fused, state_v_first=state_v_first,
         write_final=bool(update_state), tokens_per_seq=tokens, backend=backend, strict=strict, cu_host=cu_host,
         idx_host=_host_copy(state_indices) if _host_checks else None)
    return o.reshape((B, L, HV, V)), inter


def commit_states(intermediate_states, accepted, pool, state_indices, backend="auto", strict=False,
                  _host_checks=True):
    """Commits speculative drafts: for each sequence n with accepted[n] >= 0
    and state_indices[n] >= 0, pool[state_indices[n]] = intermediate_states[n,
    accepted[n]], in place (the state after the sequence's last accepted
    token, accepted[n] + 1 tokens). intermediate_states: [N, L, HV, K, V]
    (as gdn.verify returns it); accepted, state_indices: [N] int32 or int64;
    pool: [P, HV, K, V] of the same dtype and layout. Returns the pool.
    """
    t = {"intermediate_states": intermediate_states, "accepted": accepted, "pool": pool,
         "state_indices": state_indices}
    _gdn.commit({k: _raw(v) for k, v in t.items()}, backend, bool(strict), _stream(pool), _host_copy(accepted) if _host_checks else None,
                _host_copy(state_indices) if _host_checks else None)
    return pool
