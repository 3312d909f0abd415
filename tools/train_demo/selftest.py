"""Checks the patched transformers model against an independent float64 implementation of
model-spec.md §4-§7 (token-by-token lightning recurrence, explicit partial RoPE, MoE), and
checks that chunked prefill with the cache and transformers' greedy generate agree with a plain
full forward. Runs on the CPU in a few seconds; train_demo.py runs it before training.
"""
import torch
import torch.nn.functional as F

import patches


def rms(x, w, eps):
    return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def reference_logits(model, ids):
    """Spec math in float64 from the model's weights (transformers tensor layout)."""
    c = model.config
    sd = {k: v.double() for k, v in model.state_dict().items()}
    nh, nkv, d = c.num_attention_heads, c.num_key_value_heads, c.head_dim
    n, rd = len(ids), patches.rotary_dim(c)
    x = sd["model.embed_tokens.weight"][torch.tensor(ids)]
    # angle = pos * inv_freq in fp32, as the spec and the official code compute it
    inv_freq = 1.0 / c.rope_parameters["rope_theta"] ** (torch.arange(0, rd, 2, dtype=torch.float32) / rd)
    ang = (torch.arange(n, dtype=torch.float32)[:, None] * inv_freq[None]).double()
    cos, sin = torch.cat([ang.cos()] * 2, -1)[:, None], torch.cat([ang.sin()] * 2, -1)[:, None]

    def rope(t):  # [n, heads, d]: NeoX rotate-half on the first rd dims only
        r = t[..., :rd]
        rot = torch.cat((-r[..., rd // 2:], r[..., :rd // 2]), -1)
        return torch.cat((r * cos + rot * sin, t[..., rd:]), -1)

    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        h = rms(x, sd[p + "input_layernorm.weight"], c.rms_norm_eps)
        if c.layer_types[i] == "linear_attention":
            qkv = F.silu(h @ sd[p + "self_attn.qkv_proj.weight"].T).view(n, nh, 3, d)
            q, k, v = qkv.unbind(2)
            o = torch.zeros(n, nh, d, dtype=torch.float64)
            for hh in range(nh):
                lam, S = patches.decay(c, i, hh), torch.zeros(d, d, dtype=torch.float64)
                for t in range(n):
                    S = lam * S + torch.outer(k[t, hh], v[t, hh])
                    o[t, hh] = q[t, hh] @ S
            o = rms(o.reshape(n, nh * d), sd[p + "self_attn.norm.weight"], 1e-6)
            a = (torch.sigmoid(h @ sd[p + "self_attn.output_gate.weight"].T) * o) @ sd[p + "self_attn.out_proj.weight"].T
            alpha, beta = c.linear_attn_alpha_factor, c.linear_attn_beta_factor
        else:
            q = rope((h @ sd[p + "self_attn.q_proj.weight"].T).view(n, nh, d))
            k = rope((h @ sd[p + "self_attn.k_proj.weight"].T).view(n, nkv, d))
            v = (h @ sd[p + "self_attn.v_proj.weight"].T).view(n, nkv, d)
            g = nh // nkv
            k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
            s = torch.einsum("qhd,khd->hqk", q, k) / d ** 0.5
            s = s.masked_fill(torch.triu(torch.ones(n, n, dtype=torch.bool), 1), float("-inf"))
            o = torch.einsum("hqk,khd->qhd", s.softmax(-1), v).reshape(n, nh * d)
            a = o @ sd[p + "self_attn.o_proj.weight"].T
            alpha, beta = c.full_attn_alpha_factor, c.full_attn_beta_factor
        x = alpha * h + beta * a
        h2 = rms(x, sd[p + "post_attention_layernorm.weight"], c.rms_norm_eps)
        probs = (h2 @ sd[p + "mlp.gate.weight"].T).softmax(-1)
        top_w, top_i = probs.topk(c.num_experts_per_tok, -1)
        top_w = top_w / top_w.sum(-1, keepdim=True)
        F_ = c.intermediate_size
        y = torch.zeros_like(h2)
        for t in range(n):
            for w, e in zip(top_w[t], top_i[t]):
                gu = sd[p + "mlp.experts.gate_up_proj"][e]  # [2F, H]: w1 rows, then w3 rows
                act = F.silu(gu[:F_] @ h2[t]) * (gu[F_:] @ h2[t])
                y[t] += w * (sd[p + "mlp.experts.down_proj"][e] @ act)
        x = c.mlp_alpha_factor * h2 + c.mlp_beta_factor * y
    return rms(x, sd["model.norm.weight"], c.rms_norm_eps) @ sd["lm_head.weight"].T


def tiny_config(**over):
    from transformers import MiniMaxConfig
    kw = dict(vocab_size=97, hidden_size=32, intermediate_size=24, num_hidden_layers=4, num_attention_heads=4,
              num_key_value_heads=2, head_dim=8, num_local_experts=4, num_experts_per_tok=2,
              layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"],
              rope_parameters={"rope_type": "default", "rope_theta": 1000.0, "partial_rotary_factor": 0.5},
              block_size=8, linear_attn_alpha_factor=1.7, full_attn_alpha_factor=1.7, mlp_alpha_factor=1.7,
              initializer_range=0.3, bos_token_id=None, eos_token_id=None, pad_token_id=None,
              tie_word_embeddings=False)
    kw.update(over)
    c = MiniMaxConfig(**kw)
    c._experts_implementation = "eager"  # grouped_mm has no float64 kernel
    return c


def run():
    from transformers import MiniMaxForCausalLM
    from transformers.models.minimax.modeling_minimax import MiniMaxCache
    patches.apply()
    torch.manual_seed(0)
    model = MiniMaxForCausalLM(tiny_config()).double().eval()
    ids = torch.randint(0, 97, (37,)).tolist()  # 37 tokens: 4 full blocks of 8 and a partial one
    ref = reference_logits(model, ids)
    with torch.no_grad():
        full = model(torch.tensor([ids])).logits[0]
        err = (full - ref).abs().max().item() / ref.abs().max().item()
        # transformers builds its decay and RoPE tables in fp32, so ~1e-6 is the floor here;
        # an indexing error (λ^i for λ^(i+1)) or a missing RoPE shows up as > 0.1.
        assert err < 2e-5, f"patched transformers vs spec: rel err {err}"
        # chunked prefill through the cache (13 + 11 + 13 tokens: chunks straddle blocks)
        cache, parts, pos = MiniMaxCache(), [], 0
        for n in (13, 11, 13):
            chunk = torch.tensor([ids[pos:pos + n]])
            out = model(chunk, past_key_values=cache, use_cache=True,
                        position_ids=torch.arange(pos, pos + n)[None])
            parts.append(out.logits[0])
            pos += n
        err2 = (torch.cat(parts) - full).abs().max().item() / full.abs().max().item()
        assert err2 < 2e-5, f"chunked prefill vs full forward: rel err {err2}"
        # transformers' greedy generate == argmax of full forwards (exercises its cache path)
        gen = model.generate(torch.tensor([ids[:9]]), max_new_tokens=12, do_sample=False,
                             eos_token_id=None, pad_token_id=0)[0].tolist()
        seq = ids[:9]
        for _ in range(12):
            seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
        assert gen == seq, f"generate {gen} != recomputed greedy {seq}"
    print(f"selftest ok: spec rel err {err:.1e}, chunked rel err {err2:.1e}, generate == greedy")


if __name__ == "__main__":
    run()
