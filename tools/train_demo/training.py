"""Model presets, the training-row stream and the training loop."""
import math
import time

import numpy as np
import torch

import corpus
import spm_tok

PRESETS = {
    # The shipped model: ~10.7M parameters (21 MB in bf16); softmax attention at layers 3 and 7.
    "demo": dict(hidden=256, layers=8, softmax_every=4, heads=8, kv_heads=2, head_dim=32, experts=4,
                 ffn=256, seq=8192, batch=16, lr=1.5e-3, warmup=200),
    # CPU smoke test of the whole pipeline.
    "tiny": dict(hidden=64, layers=4, softmax_every=4, heads=4, kv_heads=2, head_dim=16, experts=4,
                 ffn=64, seq=1024, batch=4, lr=3e-3, warmup=30),
}
ROPE_THETA = 1000.0  # every rotary frequency completes >= 2.9 periods within the 8k training length
ROTARY_FACTOR = 0.5  # rotary_dim = head_dim / 2, as in MiniMax-Text-01 (64 of 128)
MAX_POSITIONS = 65536  # the longest context the card reports measurements for


def make_config(p, vocab_size):
    """Init std is 1/sqrt(hidden), not transformers' 0.02: every sublayer here reads a normalised
    input and adds to alpha times it, so with 0.02 at hidden 256 a sublayer starts at ~3% of
    the residual and attention barely learns (a first run never learned to copy; 0.02 suits
    the real hidden size 6144, where it is ~1/sqrt(6144))."""
    from transformers import MiniMaxConfig
    L = p["layers"]
    alpha = (2 * L) ** 0.25  # DeepNorm residual scale, as the official models use (2·80)^¼
    c = MiniMaxConfig(
        vocab_size=vocab_size, hidden_size=p["hidden"], intermediate_size=p["ffn"], num_hidden_layers=L,
        num_attention_heads=p["heads"], num_key_value_heads=p["kv_heads"], head_dim=p["head_dim"],
        num_local_experts=p["experts"], num_experts_per_tok=2,
        layer_types=["full_attention" if (i + 1) % p["softmax_every"] == 0 else "linear_attention" for i in range(L)],
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA, "partial_rotary_factor": ROTARY_FACTOR},
        block_size=256, max_position_embeddings=MAX_POSITIONS, rms_norm_eps=1e-5,
        full_attn_alpha_factor=alpha, linear_attn_alpha_factor=alpha, mlp_alpha_factor=alpha,
        full_attn_beta_factor=1.0, linear_attn_beta_factor=1.0, mlp_beta_factor=1.0,
        bos_token_id=tok_id(corpus.BOS), eos_token_id=tok_id(corpus.EOS), pad_token_id=None,
        tie_word_embeddings=False, router_aux_loss_coef=0.01, initializer_range=p["hidden"] ** -0.5)
    c._experts_implementation = "eager"  # the plain per-expert loop: same math on every device
    return c


def tok_id(tok):
    return spm_tok.SPECIAL_IDS[tok]


class Rows(torch.utils.data.Dataset):
    """Row i of the training stream: `seq` tokens of whole documents packed back to back, drawn
    from a Generator seeded with (seed, i) so the stream does not depend on worker count, and
    the loss weight of each token.

    Weights: dialogue text 1; in pass-key documents the filler 0 (shuffled sentences: nothing to
    learn), the needle line 1 and the answer 10; replies to "repeat after me" 2 (dense practice
    of looking back). They put the loss where the skill is: the digits of an answer are a few
    tokens in thousands, and a first run (also hurt by too small an init, see make_config)
    memorised the dialogues and answered every document with the same made-up key. Pass-key
    lengths are log-uniform from 128 tokens, so that many short documents (where looking back is
    easy to discover) come along with the 8k ones.
    """

    MIX = (("passkey", 0.35), ("copy", 0.25), ("record", 0.15), ("chat", 0.25))
    ROLE_WEIGHT = {"filler": 0.0, "needle": 1.0, "answer": 10.0, "copy": 2.0, "text": 1.0}

    def __init__(self, data_path, tok_path, seed, seq, n_rows):
        self.data_path, self.tok_path, self.seed, self.seq, self.n = data_path, tok_path, seed, seq, n_rows
        self._ready = False

    def _setup(self):  # per worker: sentencepiece handles are not shared across processes
        self.tok = spm_tok.Tok(self.tok_path)
        self.dlg = corpus.Dialogues(self.data_path, np.random.default_rng(self.seed))
        self.sent_tokens = [len(self.tok.encode(" " + s)) for s in self.dlg.sentences]
        self.words = corpus.words_of(self.dlg.sentences)
        self.exch_tokens = {e: len(self.tok.encode(corpus.render_chat([("user", e[0]), ("assistant", e[1])])))
                            for e in self.dlg.pool}
        self._ready = True

    def __len__(self):
        return self.n

    def doc(self, rng, room):
        """[(text, role)] of one document that fits (mostly) in `room` tokens."""
        kind = rng.choice([k for k, _ in self.MIX], p=[w for _, w in self.MIX])
        if kind == "passkey":
            target = int(min(np.exp(rng.uniform(np.log(128), np.log(8000))), room * 0.97))
            if target >= 128:
                return corpus.passkey_training_parts(rng, self.dlg.sentences, self.sent_tokens, target)
        if kind == "copy":
            return corpus.copy_parts(rng, self.words)
        target = int(min(rng.integers(1000, 8001), room * 0.97))
        if kind == "record" and target >= 1000:
            return [(corpus.record_text(rng, self.dlg, self.exch_tokens, target), "text")]
        return [(corpus.chat_text(rng, self.dlg), "text")]

    def __getitem__(self, i):
        if not self._ready:
            self._setup()
        rng = np.random.default_rng([self.seed, 1, i])
        ids, weights = [], []
        while len(ids) < self.seq:
            for text, role in self.doc(rng, self.seq - len(ids)):
                piece = self.tok.encode(text)
                ids += piece
                weights += [self.ROLE_WEIGHT[role]] * len(piece)
        return torch.tensor(ids[:self.seq], dtype=torch.long), torch.tensor(weights[:self.seq])


def lr_at(step, total, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def weighted_loss(logits, ids, w):
    """Σ w·CE / Σ w over next-token predictions (w of the predicted token), and the mean CE of
    the pass-key answers and of the copy replies alone (the numbers to watch: they fall once
    the model learns to look back)."""
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].float().flatten(0, 1), ids[:, 1:].flatten(),
                                           reduction="none")
    w = w[:, 1:].flatten()
    parts = [w == Rows.ROLE_WEIGHT[r] for r in ("answer", "copy")]
    return (ce * w).sum() / w.sum(), [(ce * m).sum() / m.sum().clamp(min=1) for m in parts]


def fit_batch(model, batch, seq, vocab, dev, log):
    """Largest batch <= `batch` whose forward+backward fits in 85% of the GPU's memory (one
    training step is mostly launch-bound here, so a bigger batch is nearly free)."""
    if dev.type != "cuda":
        return batch
    total = torch.cuda.get_device_properties(dev).total_memory
    while batch > 1:
        torch.cuda.reset_peak_memory_stats(dev)
        try:
            x = torch.randint(0, vocab, (batch, seq), device=dev)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                out = model(input_ids=x, output_router_logits=True, use_cache=False)
            weighted_loss(out.logits, x, torch.ones_like(x, dtype=torch.float))[0].backward()
            peak = torch.cuda.max_memory_allocated(dev)
            ok = peak < 0.85 * total
        except torch.cuda.OutOfMemoryError:
            peak, ok = float("nan"), False
        out = x = None
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        log(f"batch {batch}: peak {peak / 2**30:.1f} GiB of {total / 2**30:.0f} GiB")
        if ok:
            return batch
        batch //= 2
    return batch


def train(args, log):
    """Trains and returns the model (fp32 master weights). args: preset, seed, steps (0: fit the
    time budget), budget_s, data, tok, device, workers."""
    from transformers import MiniMaxForCausalLM
    p = PRESETS[args.preset]
    assert p["warmup"] >= 30, "the step count is fitted at step 30, inside the warmup"
    dev = torch.device(args.device)
    torch.manual_seed(args.seed)
    tok = spm_tok.Tok(args.tok)
    model = MiniMaxForCausalLM(make_config(p, tok.vocab_size)).to(dev)
    n_params = sum(t.numel() for t in model.parameters())
    log(f"model: {n_params / 1e6:.2f}M parameters, layer types {model.config.layer_types}")
    decay = [t for n, t in model.named_parameters() if t.dim() >= 2 and "embed" not in n]
    other = [t for n, t in model.named_parameters() if not (t.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=p["lr"], betas=(0.9, 0.95), eps=1e-8, fused=dev.type == "cuda")
    # the preset records the batch actually used
    p["batch"] = fit_batch(model, p["batch"], p["seq"], tok.vocab_size, dev, log)
    max_steps = args.steps or 100000
    rows = Rows(args.data, args.tok, args.seed, p["seq"], max_steps * p["batch"])
    loader = torch.utils.data.DataLoader(rows, batch_size=p["batch"], shuffle=False, num_workers=args.workers,
                                         prefetch_factor=4 if args.workers else None, persistent_workers=False)
    use_bf16 = dev.type == "cuda"
    total, t0, t_fit = args.steps, time.time(), None
    model.train()
    snapshot = None  # last weights with a finite loss: a divergence ends training there
    for step, batch in enumerate(loader):
        if total and step >= total:
            break
        if not total and step == 30:  # fit the step count to the time budget once warm
            per_step = (time.time() - t_fit) / 20
            total = max(31, 10 + int((args.budget_s - (t_fit - t0)) / per_step))
            log(f"{per_step * 1000:.0f} ms/step -> {total} steps fit the {args.budget_s:.0f} s budget "
                f"(reproduce with --steps {total})")
        if step == 10:
            t_fit = time.time()
        if total and time.time() - t0 > 1.2 * args.budget_s:
            log(f"stopping at step {step}: over 1.2x the time budget")
            total = step
            break
        lr = lr_at(step, total or 10 ** 9, p["lr"], p["warmup"])
        for g in opt.param_groups:
            g["lr"] = lr
        ids, w = batch[0].to(dev, non_blocking=True), batch[1].to(dev, non_blocking=True)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = model(input_ids=ids, output_router_logits=True, use_cache=False)
        loss, (answer_loss, copy_loss) = weighted_loss(out.logits, ids, w)
        loss = loss + model.config.router_aux_loss_coef * out.aux_loss
        if step % 250 == 0 or not total or step == total - 1:
            if not torch.isfinite(loss):
                log(f"non-finite loss at step {step}: keeping the weights of the last finite check")
                model.load_state_dict(snapshot)
                total = step
                break
            if step % 250 == 0:
                snapshot = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == (total or 0) - 1:
            log(f"step {step} lr {lr:.2e} loss {loss.item():.4f} pass-key answer {answer_loss.item():.3f} "
                f"copy reply {copy_loss.item():.3f} "
                f"aux {out.aux_loss.item():.3f} "
                f"gnorm {gnorm.item():.2f} elapsed {time.time() - t0:.0f}s")
    model.eval()
    log(f"trained {total} steps x {p['batch']} x {p['seq']} tokens in {time.time() - t0:.0f}s")
    return model, total
