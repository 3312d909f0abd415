"""Patches that make transformers' MiniMaxForCausalLM compute what model-spec.md (the official
MiniMax code) computes. The lightning forward below is adapted from transformers'
modeling_minimax.py (Copyright 2025 MiniMaxAI and HuggingFace Inc. teams, Apache-2.0).

What transformers 5.17 does differently, and the patch:
1. RoPE rotates the whole head and ignores partial_rotary_factor. Patched: inv_freq over
   rotary_dim = head_dim * partial_rotary_factor dims, and only the first rotary_dim dims of q/k
   rotate (NeoX rotate-half within them); the rest pass through (spec §6, §10).
2. The layer factor of the decay is 1 - i/(L-1+1e-5) + 1e-5; the official one (spec §5) is
   1 - i/(L-1) + 1e-5 (1 + 1e-5 for L = 1). Patched to the official formula.
3. The lightning state lives in the activation dtype (bf16 under autocast), and prefill that
   continues from a cached state falls back to a token-by-token loop. Patched: the state and the
   inter-block products (q·S, kᵀv) are fp32 always, and every call with a cache (first prefill,
   continued prefill, decode) runs the same blocked algorithm from the current state. Calls
   without a cache (training, scoring) run all blocks at once: the same sums, far fewer kernel
   launches. The intra-block part keeps the activation dtype.
4. MiniMaxCache answers "how many tokens are cached" from layer 0, which in a hybrid model is a
   lightning layer whose (never filled) KV slot says 0: masks and positions of a second prefill
   chunk then restart at 0. Patched: those queries go to the first softmax layer that holds keys.
Checked against the spec (decay λ = exp(-s_h f_i), λ^(i+1) on the inter-block term, λ^(i-j)
within a block, λ^m per block, output RMSNorm eps 1e-6, SiLU on q/k/v, no 1/sqrt(d)) by
selftest.py, which compares the patched model with an independent implementation of the spec.
"""
import math

import torch
from transformers.models.minimax import modeling_minimax as mm


def rotary_dim(config):
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope = config.rope_parameters or {}
    factor = rope.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", None))
    return int(head_dim * (1.0 if factor is None else factor))


def _rope_parameters(config, device=None, **kwargs):
    rd = rotary_dim(config)
    inv_freq = 1.0 / (config.rope_parameters["rope_theta"] ** (torch.arange(0, rd, 2, dtype=torch.float) / rd))
    return inv_freq.to(device), 1.0


def _apply_partial_rope(q, k, cos, sin, unsqueeze_dim=1):
    rd = cos.shape[-1]  # cos/sin cover the rotary dims only (see _rope_parameters)
    cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)

    def rope(x):
        xr = x[..., :rd]
        return torch.cat((xr * cos + mm.rotate_half(xr) * sin, x[..., rd:]), dim=-1)

    return rope(q), rope(k)


def _slope_rate(self):
    n, L = self.num_attention_heads, self.num_hidden_layers
    s = 2.0 ** (-8.0 * (torch.arange(n, dtype=torch.float64) + 1) / n)
    f = 1.0 + 1e-5 if L <= 1 else 1.0 - self.layer_idx / (L - 1) + 1e-5
    return (s * f).float()[:, None, None]


def _lightning_blocks_loop(self, q, k, v, state, acc):
    """Block by block from `state` (any prefix, any chunk): returns (o [b, h, n, d], new state)."""
    n, B = q.shape[2], self.block_size
    slope = self.slope_rate.to(acc)
    outs = []
    for start in range(0, n, B):
        m = min(B, n - start)
        qb, kb, vb = q[:, :, start:start + m], k[:, :, start:start + m], v[:, :, start:start + m]
        # intra-block: sum_{j<=i} λ^(i-j) (q_i·k_j) v_j
        intra = torch.matmul(torch.matmul(qb, kb.transpose(-1, -2)) * self.diagonal_decay[:, :, :m, :m], vb)
        with torch.autocast(device_type=q.device.type, enabled=False):
            qf, kf, vf = qb.to(acc), kb.to(acc), vb.to(acc)
            inter = torch.matmul(qf * self.query_decay[:, :m].to(acc), state)  # λ^(i+1) q_i S
            kv = torch.matmul((kf * self.key_decay[:, B - m:].to(acc)).transpose(-1, -2), vf)  # Σ λ^(m-1-j) k_jᵀv_j
            state = state * torch.exp(-slope * m) + kv
            outs.append(inter + intra.to(acc))
    return torch.cat(outs, dim=-2), state


def _lightning_blocks_parallel(self, q, k, v, acc):
    """The same blocked math from a zero state with every block at once (training: a handful
    of kernels instead of ~20 per block). The state entering block c is
    S_c = Σ_{c'<c} λ^(B(c-1-c')) KV_c', KV_c' = Σ_j λ^(B-1-j) k_jᵀv_j; exponents are >= 0, so
    nothing overflows. The final state is not produced (no cache in training)."""
    b, h, n, d = q.shape
    B = self.block_size
    nb = -(-n // B)
    if nb * B != n:  # zero tokens at the end change no earlier output
        q, k, v = (torch.nn.functional.pad(t, (0, 0, 0, nb * B - n)) for t in (q, k, v))
    Q, K, V = (t.reshape(b, h, nb, B, d) for t in (q, k, v))
    intra = torch.matmul(torch.matmul(Q, K.transpose(-1, -2)) * self.diagonal_decay[:, :, None], V)
    with torch.autocast(device_type=q.device.type, enabled=False):
        Qf, Kf, Vf = Q.to(acc), K.to(acc), V.to(acc)
        kv = torch.matmul((Kf * self.key_decay[:, None].to(acc)).transpose(-1, -2), Vf)  # [b, h, nb, d, d]
        c = torch.arange(nb, device=q.device)
        e = (c[:, None] - 1 - c[None, :]).to(acc)  # c-1-c'
        w = torch.where(e >= 0, torch.exp(-self.slope_rate.to(acc) * B * e.clamp(min=0)), 0.0)  # [h, nb, nb]
        S = torch.einsum("hcx,bhxde->bhcde", w, kv)
        inter = torch.matmul(Qf * self.query_decay[:, None].to(acc), S)  # λ^(i+1) q_i S_c
        o = inter + intra.to(acc)
    return o.reshape(b, h, nb * B, d)[:, :, :n]


def _lightning_forward(self, hidden_states, position_embeddings=None, attention_mask=None,
                       past_key_values=None, **kwargs):
    b, n, _ = hidden_states.shape
    h, d = self.num_attention_heads, self.head_dim
    qkv = self.act_fn(self.qkv_proj(hidden_states))
    qkv = mm.apply_mask_to_padding_states(qkv, attention_mask)
    q, k, v = torch.split(qkv.reshape(b, n, h, 3 * d), d, dim=3)  # per head q|k|v
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [b, h, n, d]
    acc = torch.float64 if hidden_states.dtype == torch.float64 else torch.float32  # never below fp32

    if past_key_values is None:
        o, state = _lightning_blocks_parallel(self, q, k, v, acc), None
    else:
        state = past_key_values.get_linear_cache(self.layer_idx)
        if state is None or (isinstance(state, list) and not state):
            state = torch.zeros(b, h, d, d, dtype=acc, device=hidden_states.device)
        o, state = _lightning_blocks_loop(self, q, k, v, state, acc)
        past_key_values.set_linear_cache(self.layer_idx, state)
    o = o.transpose(1, 2).reshape(b, n, h * d)
    o = self.norm(o)  # eps 1e-6: the module's default, as in the official code
    o = torch.sigmoid(self.output_gate(hidden_states)) * o
    return self.out_proj(o), state


def _attn_layer(cache, layer_idx):
    layers = cache.layers
    if layer_idx < len(layers) and getattr(layers[layer_idx], "is_initialized", False):
        return layer_idx
    return next((i for i, l in enumerate(layers) if getattr(l, "is_initialized", False)), layer_idx)


def _cache_seq_length(self, layer_idx=0):
    return mm.DynamicCache.get_seq_length(self, _attn_layer(self, layer_idx))


def _cache_mask_sizes(self, query_length, layer_idx):
    return mm.DynamicCache.get_mask_sizes(self, query_length, _attn_layer(self, layer_idx))


_applied = False


def apply():
    """Installs the patches (idempotent). Call before building or loading a model."""
    global _applied
    if _applied:
        return
    mm.MiniMaxRotaryEmbedding.compute_default_rope_parameters = staticmethod(_rope_parameters)
    mm.apply_rotary_pos_emb = _apply_partial_rope
    mm.MiniMaxLightningAttention.get_slope_rate = _slope_rate
    mm.MiniMaxLightningAttention.forward = _lightning_forward
    mm.MiniMaxCache.get_seq_length = _cache_seq_length
    mm.MiniMaxCache.get_mask_sizes = _cache_mask_sizes
    _applied = True


def decay(config, layer, head):
    """λ for (global) layer and head, spec §5; used by the independent reference."""
    n, L = config.num_attention_heads, config.num_hidden_layers
    f = 1.0 + 1e-5 if L <= 1 else 1.0 - layer / (L - 1) + 1e-5
    return math.exp(-(2.0 ** (-8.0 * (head + 1) / n)) * f)
