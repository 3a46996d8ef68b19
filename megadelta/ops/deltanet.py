"""Gated DeltaNet operators: the causal conv and the gated delta rule.

The gated delta rule keeps, per value head, a key_dim x value_dim memory S and,
for each token t (beta in (0,1), g <= 0 a log-decay):

    S <- exp(g_t) * S
    u_t = beta_t * (v_t - S^T k_t)          # the part of v_t that S does not yet predict
    S <- S + k_t u_t^T
    o_t = S^T q_t

``recurrent_gated_delta_rule`` runs that loop literally (decode). The chunked
form (prefill) gets the same result with matrix products: within a chunk the
updates u depend on the incoming state S0 only linearly, so

    (I + diag(beta) L) U = diag(beta) (V - diag(e^gamma) K S0)

with gamma the in-chunk cumulative log-decay and L[t,s] = e^(gamma_t-gamma_s) k_t.k_s
for s < t. Solving the unit-triangular system once per chunk gives
U = Wv - Wk S0, where Wv and Wk do not depend on S0 and so are computed for all
chunks at once; only the cheap state hand-over between chunks is sequential.

Shapes: q, k [T, H, Dk] (already L2-normalised, q already scaled, and repeated
to the H value heads), v [T, H, Dv], g and beta [T, H], state [H, Dk, Dv].
Everything is float32. ``state`` is updated in place; the outputs are [T, H, Dv].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, conv_state: torch.Tensor) -> torch.Tensor:
    """Depthwise causal conv + SiLU over x [T, C] with weight [C, K], continuing
    from conv_state [C, K-1] (the previous K-1 inputs, oldest first), which is
    updated in place to the last K-1 inputs."""
    seq_len, kernel = x.shape[0], weight.shape[1]
    padded = torch.cat([conv_state.to(torch.float32), x.to(torch.float32).T], dim=1)  # [C, K-1+T]
    conv_state.copy_(padded[:, -(kernel - 1):])
    windows = padded.unfold(1, kernel, 1)                                            # [C, T, K]
    out = (windows * weight.to(torch.float32)[:, None, :]).sum(-1)                   # [C, T]
    assert out.shape[1] == seq_len
    return F.silu(out).T


def recurrent_gated_delta_rule(q, k, v, g, beta, state: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(v)
    for t in range(q.shape[0]):
        state.mul_(g[t].exp()[:, None, None])
        predicted = torch.einsum("hkv,hk->hv", state, k[t])
        update = beta[t][:, None] * (v[t] - predicted)
        state.add_(k[t][:, :, None] * update[:, None, :])
        out[t] = torch.einsum("hkv,hk->hv", state, q[t])
    return out


def chunked_gated_delta_rule(q, k, v, g, beta, state: torch.Tensor, chunk_size: int = 64) -> torch.Tensor:
    seq_len = q.shape[0]
    n_chunks = -(-seq_len // chunk_size)
    pad = n_chunks * chunk_size - seq_len

    def chunks(x):
        # [T, H, ...] -> [H, n_chunks, C, ...]; padded tokens have k = v = beta = g = 0,
        # so they neither change the state nor decay it.
        x = F.pad(x, (0, 0) * (x.dim() - 2) + (0, 0, 0, pad))
        return x.reshape(n_chunks, chunk_size, *x.shape[1:]).movedim(2, 0)

    q, k, v, g, beta = (chunks(x) for x in (q, k, v, g, beta))
    gamma = g.cumsum(-1)                                                # [H, N, C]
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
    decay = (gamma[..., :, None] - gamma[..., None, :]).masked_fill(~causal, float("-inf")).exp()

    strictly_lower = (k @ k.transpose(-1, -2)) * decay
    strictly_lower = strictly_lower.tril(-1) * beta[..., :, None]
    eye = torch.eye(chunk_size, dtype=q.dtype, device=q.device)
    system = eye + strictly_lower
    w_v = torch.linalg.solve_triangular(system, beta[..., None] * v, upper=False, unitriangular=True)
    w_k = torch.linalg.solve_triangular(system, (beta * gamma.exp())[..., None] * k,
                                        upper=False, unitriangular=True)
    scores = (q @ k.transpose(-1, -2)) * decay                          # [H, N, C, C], s <= t
    q_decayed = q * gamma.exp()[..., None]
    k_to_end = k * (gamma[..., -1:] - gamma).exp()[..., None]
    chunk_decay = gamma[..., -1].exp()                                  # [H, N]

    out = torch.empty_like(v)
    for n in range(n_chunks):
        update = w_v[:, n] - w_k[:, n] @ state
        out[:, n] = q_decayed[:, n] @ state + scores[:, n] @ update
        state.mul_(chunk_decay[:, n, None, None]).add_(k_to_end[:, n].transpose(-1, -2) @ update)
    return out.movedim(0, 2).reshape(n_chunks * chunk_size, *out.shape[:1], -1)[:seq_len]


def l2_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + eps)
