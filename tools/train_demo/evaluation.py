"""Measures the shipped model with (patched) transformers in fp32 and writes the test data.

Everything here loads the files exactly as shipped (bf16 weights upcast to fp32), so the figures
and the expectations in tests/data/demo describe models/demo itself.
"""
import json
import re

import numpy as np
import torch

import corpus
import patches
import spm_tok

PREFILL_CHUNK = 8192
GREEDY_PROMPTS = [  # (kind, text): chat prompts get the Text-01 template, raw ones are used as is
    ("chat", "Write a poem about penguins"),
    ("chat", "Describe the sea in one sentence"),
    ("chat", "List three common fruits"),
    ("chat", "Write a simple game using Python."),
    ("raw", "The moonlight dances on the"),
    ("chat", "Repeat after me exactly:\nblue lantern 7 river 1905 quiet harbor"),
]


def load_model(model_dir, device):
    from transformers import MiniMaxForCausalLM
    patches.apply()
    model = MiniMaxForCausalLM.from_pretrained(model_dir, dtype=torch.float32, experts_implementation="eager")
    for layer in model.model.layers:  # derived buffers are not shipped: rebuild them (spec §3)
        a = layer.self_attn
        if hasattr(a, "slope_rate"):
            s = a.get_slope_rate()
            for name, value in zip(("slope_rate", "query_decay", "key_decay", "diagonal_decay"),
                                   (s, *a.decay_factors(s))):
                getattr(a, name).copy_(value)
    return model.to(device).eval()


def exact_fp32():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


@torch.no_grad()
def greedy(model, ids, max_new, stop_id=None):
    """Chunked prefill through the cache, then greedy decoding. Returns (new ids, top1-top2 margins)."""
    from transformers.models.minimax.modeling_minimax import MiniMaxCache
    dev = next(model.parameters()).device
    cache, pos, logits = MiniMaxCache(), 0, None
    feed = list(ids)
    new, margins = [], []
    while True:
        while pos < len(feed):
            chunk = feed[pos:pos + PREFILL_CHUNK]
            out = model(torch.tensor([chunk], device=dev), past_key_values=cache, use_cache=True,
                        position_ids=torch.arange(pos, pos + len(chunk), device=dev)[None], logits_to_keep=1)
            logits, pos = out.logits[0, -1].float(), pos + len(chunk)
        if len(new) == max_new:
            return new, margins
        top = torch.topk(logits, 2)
        new.append(int(top.indices[0]))
        margins.append(float(top.values[0] - top.values[1]))
        if new[-1] == stop_id:
            return new, margins
        feed.append(new[-1])


@torch.no_grad()
def perplexity(model, ids):
    """exp(mean NLL of tokens 1..n-1, each predicted from all tokens before it)."""
    dev = next(model.parameters()).device
    logits = model(torch.tensor([ids], device=dev)).logits[0, :-1].double()
    nll = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:], device=dev), reduction="sum").item()
    return float(np.exp(nll / (len(ids) - 1))), nll


def first_number(text):
    m = re.search(r"\d+", text)
    return m.group(0) if m else ""


def passkey_docs(dlg, tok, seed, count, lo, hi):
    """`count` documents of lo..hi tokens from their own seed (depths spread evenly)."""
    rng = np.random.default_rng([seed, 2, lo, hi])
    sent_tokens = [len(tok.encode(" " + s)) for s in dlg.sentences]
    docs = []
    for i in range(count):
        target = int(rng.integers(lo, hi + 1))
        depth = (i + 0.5) / count
        prompt, answer, key, depth = corpus.passkey_doc(rng, dlg.sentences, sent_tokens, target, depth)
        docs.append({"prompt": prompt, "passkey": key, "depth": round(depth, 3)})
    return docs


def run_passkey(model, tok, docs):
    hits = 0
    for d in docs:
        ids = tok.check_split_invariance(d["prompt"])
        new, _ = greedy(model, ids, 16, stop_id=tok.eos)
        d["n_tokens"] = len(ids)
        d["answer"] = tok.decode([t for t in new if t != tok.eos])
        d["correct"] = first_number(d["answer"]) == d["passkey"]
        hits += d["correct"]
    return hits


def evaluate(model_dir, tok_path, data_path, seed, test_dir, out_dir, log, long_lengths, device,
             n_passkey=100, n_long=20):
    exact_fp32()
    tok = spm_tok.Tok(tok_path)
    dlg = corpus.Dialogues(data_path, np.random.default_rng(seed))  # same held-out split as training
    model = load_model(model_dir, device)
    res = {"seed": seed}

    text = dlg.heldout_text()
    ids = tok.check_split_invariance(text)
    ppl, nll = perplexity(model, ids)
    res["heldout"] = {"tokens": len(ids), "perplexity": ppl, "nll_sum": nll}
    log(f"held-out perplexity {ppl:.3f} over {len(ids)} tokens")
    open(f"{test_dir}/heldout.txt", "w", encoding="utf-8").write(text)
    json.dump({"tokens": len(ids), "perplexity": ppl, "nll_sum": nll,
               "definition": "exp(mean NLL of tokens 1..n-1), ids = encode(heldout.txt) with special "
                             "tokens parsed and no BOS added; transformers fp32"},
              open(f"{test_dir}/heldout.json", "w"), indent=1)

    cases = []
    for kind, text in GREEDY_PROMPTS:
        prompt = corpus.render_chat([("user", text)], add_generation_prompt=True) if kind == "chat" else text
        pids = tok.check_split_invariance(prompt)
        new, margins = greedy(model, pids, 32)
        gen = model.generate(torch.tensor([pids], device=model.device), max_new_tokens=32, do_sample=False,
                             eos_token_id=None, pad_token_id=0)[0, len(pids):].tolist()
        assert gen == new, f"transformers generate {gen} != chunked greedy {new}"
        cases.append({"prompt": prompt, "prompt_ids": pids, "ids": new, "text": tok.decode(new),
                      "margins": [round(m, 6) for m in margins]})
        log(f"greedy {text!r} -> {tok.decode(new)!r} (min margin {min(margins):.4f})")
    json.dump(cases, open(f"{test_dir}/greedy.json", "w"), indent=1)
    res["greedy"] = [{"prompt": text, "kind": kind, "text": c["text"]} for (kind, text), c in zip(GREEDY_PROMPTS, cases)]

    test_docs = passkey_docs(dlg, tok, seed + 1, 20, 2000, 8000)
    res["passkey_test_20"] = run_passkey(model, tok, test_docs)
    with open(f"{test_dir}/passkey_eval.jsonl", "w", encoding="utf-8") as f:
        for d in test_docs:
            f.write(json.dumps({k: d[k] for k in ("prompt", "passkey", "n_tokens", "depth", "answer")}) + "\n")
    log(f"passkey test set (2k-8k): {res['passkey_test_20']}/20")
    json.dump(res, open(f"{out_dir}/results.json", "w"), indent=1)

    acc = {}
    # long documents aim 2% under their length: the generator overshoots its target by ~1%
    buckets = [("2k-8k", 2000, 8000, n_passkey)] + [(f"{n // 1024}k", int(0.98 * n), int(0.98 * n), n_long)
                                                    for n in long_lengths]
    for name, lo, hi, count in buckets:
        docs = passkey_docs(dlg, tok, seed + 2, count, lo, hi)
        hits = run_passkey(model, tok, docs)
        acc[name] = {"correct": hits, "total": count, "accuracy": hits / count,
                     "tokens": [min(d["n_tokens"] for d in docs), max(d["n_tokens"] for d in docs)],
                     "misses": [{"depth": d["depth"], "answer": d["answer"]} for d in docs if not d["correct"]][:5]}
        log(f"passkey {name}: {hits}/{count}")
        res["passkey"] = acc
        json.dump(res, open(f"{out_dir}/results.json", "w"), indent=1)
    return res
