"""An independent float64 NumPy oracle for the Python tests (DESIGN section 1)."""

import numpy as np


def recurrence(q, k, v, g, beta, cu, h0=None, scale=None, l2norm=True):
    """float64 token recurrence over packed sequences. q, k [T, H, K];
    v [T, HV, V]; g, beta [T, HV]; h0 [N, HV, K, V]. Returns (o, states)."""
    q, k, v, g, beta = (x.astype(np.float64) for x in (q, k, v, g, beta))
    T, H, K = q.shape
    HV, V = v.shape[1], v.shape[2]
    scale = K ** -0.5 if scale is None else scale
    if l2norm:
        q = q / np.sqrt((q * q).sum(-1, keepdims=True) + 1e-6)
        k = k / np.sqrt((k * k).sum(-1, keepdims=True) + 1e-6)
    o = np.zeros((T, HV, V))
    N = len(cu) - 1
    states = np.zeros((N, HV, K, V))
    for n in range(N):
        for hv in range(HV):
            h = hv // (HV // H)
            S = np.zeros((K, V)) if h0 is None else h0[n, hv].astype(np.float64).copy()
            for t in range(cu[n], cu[n + 1]):
                S = np.exp(g[t, hv]) * S
                u = beta[t, hv] * (v[t, hv] - S.T @ k[t, h])
                S = S + np.outer(k[t, h], u)
                o[t, hv] = S.T @ (scale * q[t, h])
            states[n, hv] = S
    return o, states


def rel(x, r):
    x, r = np.asarray(x, np.float64), np.asarray(r, np.float64)
    return np.sqrt(((x - r) ** 2).sum() / (r ** 2).sum())
