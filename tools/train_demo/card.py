"""Writes models/demo/README.md (the model card) from config.json and the measured results."""
import json
import os


def _fmt_passkey(res):
    rows = []
    for name, a in res.get("passkey", {}).items():
        rows.append(f"| {name} | {a['tokens'][0]:,}–{a['tokens'][1]:,} | {a['correct']}/{a['total']} "
                    f"| {100 * a['accuracy']:.0f}% |")
    return "\n".join(rows) or "| (not measured) | | | |"


def write(model_dir, meta):
    c = json.load(open(os.path.join(model_dir, "config.json")))
    r = meta.get("results", {})
    files = sorted(f for f in os.listdir(model_dir) if f != "README.md")
    sizes = {f: os.path.getsize(os.path.join(model_dir, f)) for f in files}
    softmax = [i for i, t in enumerate(c["layer_types"]) if t == "full_attention"]
    rope = c["rope_parameters"]
    rd = int(c["head_dim"] * rope["partial_rotary_factor"])
    held = r.get("heldout", {})
    greedy = "\n".join(f"- {'chat, user says' if g.get('kind') == 'chat' else 'raw text'} `{g['prompt']!r}` → "
                       f"`{g['text']!r}`" for g in r.get("greedy", []))
    p = meta
    steps_tokens = p["steps"] * p["batch"] * p["seq"]
    text = f"""# libminimax demo model

A {p['params'] / 1e6:.1f}M-parameter model of the MiniMax-01 architecture (MiniMax-Text-01 / M1:
hybrid lightning + softmax attention, mixture of experts, post-norm with DeepNorm scaling), trained
from scratch so that the library's quick start and tests have a real model that runs on a laptop
CPU. It is a demo, not an assistant: it has seen {p['train_text_tokens']:,} distinct tokens of English
dialogue (many times over) and learned one long-context skill, retrieving a pass key hidden in a
long document (and, less reliably, repeating back what it is asked to repeat).

## Shape

| | |
|---|---|
| hidden size | {c['hidden_size']} |
| layers | {c['num_hidden_layers']}; softmax attention at layers {', '.join(map(str, softmax))}, lightning attention elsewhere |
| attention heads | {c['num_attention_heads']} × {c['head_dim']}; {c['num_key_value_heads']} KV heads in the softmax layers |
| RoPE | first {rd} of {c['head_dim']} head dims (`partial_rotary_factor` {rope['partial_rotary_factor']}), theta {rope['rope_theta']:g} |
| MoE | {c['num_local_experts']} experts, top-{c['num_experts_per_tok']}, expert FFN {c['intermediate_size']}, SwiGLU |
| residual scale | α = {c['mlp_alpha_factor']:.4f} = (2·{c['num_hidden_layers']})^¼ for all sublayers, β = 1 |
| vocabulary | {c['vocab_size']} (sentencepiece BPE), untied embeddings and lm_head |
| context | trained on {p['seq']:,}-token rows; `max_position_embeddings` {c['max_position_embeddings']:,} |
| lightning block size | {c['block_size']} (any block size computes the same function) |

The config uses transformers' native spelling (`model_type` `minimax`). Weights are bf16. The
derived lightning buffers (`slope_rate`, `query_decay`, `key_decay`, `diagonal_decay`) are not
stored: they follow from the config (model-spec §3, §5).

Files: {', '.join(f'`{f}` ({sizes[f] / 1e6:.2f} MB)' for f in files)}; {sum(sizes.values()) / 1e6:.1f} MB in all.

## Tokenizer and chat format

`tokenizer.model` is a sentencepiece BPE model trained on the training conversations only: byte
fallback (any UTF-8 text encodes; a newline is the byte piece `<0x0A>`), digits split one per token,
no dummy prefix, no normalisation. Special tokens, each one id: `<unk>` 0,
`<beginning_of_sentence>` 1 (BOS), `<end_of_sentence>` 2 (EOS), `<end_of_document>` 3,
`<begin_of_document>` 4. No BOS is added automatically: prompts start with the chat template's
`<beginning_of_sentence>`. The chat template (in `tokenizer_config.json`) is MiniMax-Text-01's:

```
<beginning_of_sentence>system ai_setting=assistant\\n{{system}}<end_of_sentence>\\n
<beginning_of_sentence>user name=user\\n{{text}}<end_of_sentence>\\n
<beginning_of_sentence>ai name=assistant\\n{{reply}}<end_of_sentence>\\n
```

## Training

- Data: the English MR-NIAH dialogues (`mr-niah-english-20k.jsonl`, MIT, sha256
  `{p['data_sha256'][:16]}…`). Its 19 records share one haystack of 16 conversations; two of those
  are held out everywhere (the perplexity text below) and the rest, with each record's needle
  conversations, final question and answer, are rendered in the chat format. Mixed in, by
  document: synthetic pass-key documents 35% (filler made of dialogue sentences, the line "The
  pass key is NNNNN. Remember it. NNNNN is the pass key." at a random depth, a final user
  question, an assistant answer with the digits; 128–8,000 tokens, log-uniform), "repeat after
  me" requests for 4–40 random words and numbers 25%, re-sampled MR-NIAH records 15%, short chats
  25%; packed into rows of {p['seq']:,} tokens.
- Loss weights per token: dialogue text 1, pass-key filler 0 (shuffled sentences), needle line 1,
  pass-key answer 10, copied reply 2. Initialisation std 1/sqrt(hidden) (see `training.py`).
- {p['steps']:,} steps × {p['batch']} rows × {p['seq']:,} tokens = {steps_tokens / 1e6:.1f}M tokens in
  {p['train_seconds']} s on one {p['device']}; AdamW (β 0.9/0.95, weight decay 0.1), peak LR
  {p['lr']}, {p['warmup']} warmup steps then cosine to 10%, bf16 autocast with fp32 master weights
  and an fp32 lightning state, MoE load-balancing loss 0.01.
- Code: `tools/train_demo` with transformers' `MiniMaxForCausalLM`, patched to match the official
  math (partial RoPE, the official decay factor, fp32 lightning state; see `patches.py`).
- Seed {p['seed']}. Reproduce: `python3 tools/train_demo/train_demo.py run --seed {p['seed']} --steps {p['steps']}`
  (the same data stream and initialisation; GPU kernels are not bit-deterministic).

## Measured (transformers, fp32, on the shipped bf16 weights)

- Held-out dialogue perplexity: **{held.get('perplexity', float('nan')):.2f}** over {held.get('tokens', 0):,}
  tokens (`tests/data/demo/heldout.txt`). Unseen English is hard for a model that saw so little of
  it; the training conversations themselves are close to memorised.
- Pass-key retrieval (greedy, answer's first number equals the key; needle depths spread evenly):

| length | tokens | correct | accuracy |
|---|---|---|---|
{_fmt_passkey(r)}

- The 20 documents of `tests/data/demo/passkey_eval.jsonl` (2k–8k tokens): {r.get('passkey_test_20', 'n/a')}/20.
- Greedy continuations, 32 new tokens:
{greedy}
- CPU tokens/s of the main job: to be measured on the CI machine.

## Limits

Tiny vocabulary of English, no knowledge, repeats its training conversations. Retrieval beyond
the 8k training length is what the table above shows and no more. Use it to exercise the engine
(loading, hybrid attention, MoE, long prefill, streaming, chat format), not for answers.

## License

See `LICENSE`: the training data's MIT notice and the transformers (Apache-2.0) acknowledgement.
"""
    open(os.path.join(model_dir, "README.md"), "w").write(text)
