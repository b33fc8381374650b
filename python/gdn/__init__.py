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

import sys

from . import _gdn

__all__ = ["chunk_gated_delta_rule", "recurrent_update", "verify", "commit_states", "version", "device_count"]

_PREFILL, _DECODE, _VERIFY = 0, 1, 2


def version():
    """The library version and the commit it was built from."""
    return _gdn.version()


def device_count():
    """CUDA devices the library sees (0 without CUDA)."""
    return _gdn.device_count()


class _Torch:
    """PyTorch arrays: allocation on a tensor's device, the caller's current
    CUDA stream, host copies of index arrays."""

    def __init__(self):
        import torch

        self.float32 = torch.float32
        self._torch = torch
        # With the DLPack C exchange API (PyTorch 2.10 and later) the
        # extension reads the tensors and asks PyTorch for the current
        # stream itself (stream None). Otherwise the raw cudaStream_t of the
        # current stream, without building a torch.cuda.Stream (several
        # times cheaper), or the public call where this PyTorch lacks it.
        self._stream_in_extension = _gdn.has_exchange_api(torch.Tensor)
        self._raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)

    def empty(self, like, shape, dtype):
        # Sizes as separate arguments: PyTorch parses them faster than a tuple.
        return self._torch.empty(*shape, dtype=dtype, device=like.device)

    def stream(self, x):
        if self._stream_in_extension:
            return None
        if not x.is_cuda:
            return 0
        if self._raw_stream is not None:
            return self._raw_stream(x.get_device())
        return self._torch.cuda.current_stream(x.device).cuda_stream

    def device_copy(self, x):
        return x.detach().cpu().numpy() if x.is_cuda else None

    def host_values(self, x):
        return x.detach().cpu().numpy()

    def int32_range(self, like, host):
        return self._torch.from_numpy(host).to(like.device)


class _Other:
    """Any other array framework (NumPy, CuPy, ...), through its module's
    empty, asarray and float32 and the array's get()."""

    def __init__(self, name):
        self._mod = __import__(name)
        self._numpy = name == "numpy"
        self.float32 = self._mod.float32

    def empty(self, like, shape, dtype):
        return self._mod.empty(shape, dtype=dtype)

    def stream(self, x):
        return 0

    def device_copy(self, x):
        return x.get() if hasattr(x, "get") else None

    def host_values(self, x):
        return x if self._numpy else self.device_copy(x)

    def int32_range(self, like, host):
        return host if self._numpy else self._mod.asarray(host)


_FRAMEWORKS = {}  # array type -> _Torch or _Other


def _framework(x):
    """The framework of x's type (found once per type; torch.Tensor's
    subclasses are PyTorch's wherever they are defined)."""
    fw = _FRAMEWORKS.get(type(x))
    if fw is None:
        name = type(x).__module__.split(".")[0]
        torch = sys.modules.get("torch")
        if name == "torch" or (torch is not None and isinstance(x, torch.Tensor)):
            fw = _Torch()
        else:
            fw = _Other(name)
        _FRAMEWORKS[type(x)] = fw
    return fw


def _device_copy(x):
    """A NumPy copy of a small index array that lives on a device, for the
    library's value checks; None for host arrays (the library reads those
    itself) and for None."""
    return None if x is None else _framework(x).device_copy(x)


def _host_values(x):
    """The values of a small index array as a host (NumPy) array."""
    return None if x is None else _framework(x).host_values(x)


def _host_copy_of(host, like, name):
    """The values of a host array (NumPy, a CPU tensor, a list) given for the
    device array `like`, as a NumPy array of like's index type (the library
    reads a host copy with the device array's dtype), with like's length."""
    import numpy as np

    if getattr(host, "is_cuda", False) or type(host).__module__.split(".")[0] == "cupy":
        raise ValueError(f"{name}: must be a host (CPU) array; a device array would need a synchronisation")
    values = np.asarray(host if isinstance(host, (list, tuple)) else _host_values(host))
    if values.shape != tuple(like.shape):
        raise ValueError(f"{name}: must have the shape of its device array {tuple(like.shape)}, got {values.shape}")
    return np.ascontiguousarray(values, dtype=np.int64 if str(like.dtype).endswith("int64") else np.int32)


def _int32_range(fw, like, n, step):
    """[0, step, 2 step, ..., n step] as int32 on like's device, plus a host copy."""
    import numpy as np

    host = (np.arange(n + 1, dtype=np.int32) * step).astype(np.int32)
    return fw.int32_range(like, host), host


# The calls below take the arguments already checked and normalised by the
# public functions (and by gdn.torch, which calls them directly); the token
# arguments keep their batch dimension (the extension folds it into the
# tokens), and outputs are allocated in their final shapes, so a call makes
# no reshape.


def _prefill(fw, q, k, v, g, beta, cu, cu_host, scale, initial_state, output_final_state, l2norm, state_v_first,
             state_indices, idx_host, A_log, dt_bias, checkpoint_every, checkpoints, backend, strict):
    """Prefill of the sequences cu delimits in q's B * T tokens: (o [B, T, HV, V], final_state)."""
    B, T, H, K = q.shape
    vs = v.shape
    HV, V = vs[2], vs[3]
    o = fw.empty(v, (B, T, HV, V), v.dtype)
    final = None
    if state_indices is not None:
        final, write = initial_state, True
    else:
        write = output_final_state
        if write:
            N = cu.shape[0] - 1
            dims = (N, HV, V, K) if state_v_first else (N, HV, K, V)
            final = fw.empty(q, dims, fw.float32 if initial_state is None else initial_state.dtype)
    _gdn.run(_PREFILL, q, k, v, g, beta, A_log, dt_bias, cu, initial_state, state_indices,
             None if state_indices is not None else final, checkpoints, None, o, scale, l2norm, state_v_first, write,
             checkpoint_every, 0, backend, strict, fw.stream(q), cu_host, idx_host)
    return o, final


def _decode(fw, q, k, v, g, beta, state, state_indices, idx_host, scale, l2norm, state_v_first, A_log, dt_bias,
            backend, strict):
    """Decode: o in v's shape ([N, HV, V] or [N, 1, HV, V])."""
    o = fw.empty(v, v.shape, v.dtype)
    _gdn.run(_DECODE, q, k, v, g, beta, A_log, dt_bias, None, state, state_indices,
             state if state_indices is None else None, None, None, o, scale, l2norm, state_v_first, True, 0, 0,
             backend, strict, fw.stream(q), None, idx_host)
    return o


def _verify(fw, q, k, v, g, beta, state, state_indices, idx_host, cu_seqlens, cu_host, slots, scale, l2norm,
            state_v_first, A_log, dt_bias, output_intermediate_states, update_state, backend, strict):
    """Verify with `slots` intermediate states per sequence: (o [B, L, HV, V], states or None)."""
    B, L, H, K = q.shape
    vs = v.shape
    HV, V = vs[2], vs[3]
    o = fw.empty(v, (B, L, HV, V), v.dtype)
    inter = None
    if output_intermediate_states:
        N = B if cu_seqlens is None else cu_seqlens.shape[0] - 1
        dims = (N, max(slots, 1), HV, V, K) if state_v_first else (N, max(slots, 1), HV, K, V)
        inter = fw.empty(q, dims, state.dtype)
    _gdn.run(_VERIFY, q, k, v, g, beta, A_log, dt_bias, cu_seqlens, state, state_indices,
             state if state_indices is None and update_state else None, None, inter, o, scale, l2norm,
             state_v_first, update_state, 0, L if cu_seqlens is None else 0, backend, strict, fw.stream(q), cu_host,
             idx_host)
    return o, inter


def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
                           use_qk_l2norm_in_kernel=False, cu_seqlens=None, state_v_first=False,
                           state_indices=None, A_log=None, dt_bias=None, checkpoint_every=0,
                           checkpoints=None, backend="auto", strict=False, cu_seqlens_cpu=None,
                           _host_checks=True):
    """Chunked prefill. Returns (o, final_state).

    q, k: [B, T, H, K]; v: [B, T, HV, V]; g, beta: [B, T, HV] (with A_log and
    dt_bias [HV], g and beta are the raw gate inputs a and b:
    g = -exp(A_log) * softplus(a + dt_bias), beta = sigmoid(b)). With
    cu_seqlens [N + 1], B == 1 and the sequences are packed; without it, each
    batch row is one sequence. initial_state: [N, HV, K, V] ([N, HV, V, K]
    with state_v_first), or with state_indices [N] the state pool [P, ...]
    updated in place (negative index: start from zero, write nothing); the
    pool is then returned as final_state. checkpoints: [C, HV, K, V] written
    every checkpoint_every tokens (a multiple of 64). cu_seqlens_cpu: the
    values of a device cu_seqlens on the host (as flash-linear-attention takes
    it; they must be equal): the call is then planned and checked from them
    without the copy and synchronisation it would otherwise make.
    """
    fw = _FRAMEWORKS.get(type(q)) or _framework(q)
    B, T = q.shape[0], q.shape[1]
    if cu_seqlens is None:
        cu, cu_host = _int32_range(fw, q, B, T)
    else:
        if B != 1:
            raise ValueError(f"q: with cu_seqlens the batch dimension must be 1, got {B}")
        if cu_seqlens_cpu is not None:
            cu, cu_host = cu_seqlens, _host_copy_of(cu_seqlens_cpu, cu_seqlens, "cu_seqlens_cpu")
        else:
            cu, cu_host = cu_seqlens, _device_copy(cu_seqlens) if _host_checks else None
    if state_indices is not None and initial_state is None:
        raise ValueError("initial_state: the state pool is required with state_indices")
    return _prefill(fw, q, k, v, g, beta, cu, cu_host, 0.0 if scale is None else float(scale), initial_state,
                    output_final_state, use_qk_l2norm_in_kernel, state_v_first, state_indices,
                    _device_copy(state_indices) if _host_checks else None, A_log, dt_bias, int(checkpoint_every),
                    checkpoints, backend, strict)


def recurrent_update(q, k, v, g, beta, state, state_indices=None, scale=None, use_qk_l2norm_in_kernel=False,
                     state_v_first=False, A_log=None, dt_bias=None, backend="auto", strict=False, _host_checks=True):
    """Decode: one token per sequence, the state updated in place.

    q, k: [N, H, K] (or [N, 1, H, K]); v: [N, HV, V]; g, beta: [N, HV].
    state: a pool [P, HV, K, V] addressed by state_indices [N] (negative:
    padding, no read, no write), or [N, HV, K, V] without state_indices.
    Returns o [N, HV, V].
    """
    fw = _FRAMEWORKS.get(type(q)) or _framework(q)
    o = _decode(fw, q, k, v, g, beta, state, state_indices, _device_copy(state_indices) if _host_checks else None,
                0.0 if scale is None else float(scale), use_qk_l2norm_in_kernel, state_v_first, A_log, dt_bias,
                backend, strict)
    return o if o.ndim == 3 else o.reshape((o.shape[0] * o.shape[1],) + tuple(o.shape[2:]))


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
    fw = _FRAMEWORKS.get(type(q)) or _framework(q)
    cu_host = None
    if cu_seqlens is not None:
        cu_host = _host_values(cu_seqlens) if _host_checks else None
        N = cu_seqlens.shape[0] - 1
        slots = int(max(cu_host[1:] - cu_host[:-1])) if cu_host is not None and N > 0 else 16
        slots = slots if _slots is None else _slots
    else:
        slots = q.shape[1]
    return _verify(fw, q, k, v, g, beta, state, state_indices, _device_copy(state_indices) if _host_checks else None,
                   cu_seqlens, cu_host, slots, 0.0 if scale is None else float(scale), use_qk_l2norm_in_kernel,
                   state_v_first, A_log, dt_bias, output_intermediate_states, update_state, backend, strict)


def commit_states(intermediate_states, accepted, pool, state_indices, backend="auto", strict=False,
                  _host_checks=True):
    """Commits speculative drafts: for each sequence n with accepted[n] >= 0
    and state_indices[n] >= 0, pool[state_indices[n]] = intermediate_states[n,
    accepted[n]], in place (the state after the sequence's last accepted
    token, accepted[n] + 1 tokens). intermediate_states: [N, L, HV, K, V]
    (as gdn.verify returns it); accepted, state_indices: [N] int32 or int64;
    pool: [P, HV, K, V] of the same dtype and layout. Returns the pool.
    """
    fw = _FRAMEWORKS.get(type(pool)) or _framework(pool)
    _gdn.commit(intermediate_states, accepted, pool, state_indices, backend, strict, fw.stream(pool),
                _device_copy(accepted) if _host_checks else None,
                _device_copy(state_indices) if _host_checks else None)
    return pool
