"""Writes the shipped model folder: config.json, model.safetensors (bf16), tokenizer.model,
tokenizer_config.json, generation_config.json and LICENSE. The model card is card.py's job."""
import json
import os
import shutil
import tempfile

import torch
from safetensors.torch import load_file, save_file

import corpus
import spm_tok

# Derived from the slopes (model-spec §3); ~6 MB in bf16 for this model, so they are not shipped.
DERIVED = ("slope_rate", "query_decay", "key_decay", "diagonal_decay")

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}{%- set text = message['content'] -%}"
    "{%- else -%}{%- set text = message['content'] | selectattr('type', 'equalto', 'text') "
    "| map(attribute='text') | join('') -%}{%- endif -%}"
    "{%- if message['role'] == 'system' -%}"
    "{{ '<beginning_of_sentence>system ai_setting=assistant\\n' + text + '<end_of_sentence>\\n' }}"
    "{%- elif message['role'] == 'user' -%}"
    "{{ '<beginning_of_sentence>user name=user\\n' + text + '<end_of_sentence>\\n' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ '<beginning_of_sentence>ai name=assistant\\n' + text + '<end_of_sentence>\\n' }}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<beginning_of_sentence>ai name=assistant\\n' }}{%- endif -%}")


def check_chat_template():
    """The template renders exactly what corpus.render_chat (the training format) renders.
    Returns False where jinja2 is not installed (the check then ran on the machine that has it)."""
    try:
        import jinja2
    except ImportError:
        return False
    msgs = [("system", "Be brief."), ("user", "Hi\nthere"), ("assistant", "Hello."), ("user", "Bye")]
    env = jinja2.Environment()
    for parts in (False, True):
        m = [{"role": r, "content": [{"type": "text", "text": t}] if parts else t} for r, t in msgs]
        got = env.from_string(CHAT_TEMPLATE).render(messages=m, add_generation_prompt=True)
        assert got == corpus.render_chat(msgs, add_generation_prompt=True), got
    return True


def tokenizer_config(tok):
    added = {"0": "<unk>", **{str(i): t for t, i in spm_tok.SPECIAL_IDS.items()}}
    return {
        "bos_token": corpus.BOS, "eos_token": corpus.EOS, "unk_token": "<unk>",
        "add_bos_token": False, "add_eos_token": False, "model_max_length": 65536,
        "clean_up_tokenization_spaces": False, "chat_template": CHAT_TEMPLATE,
        "added_tokens_decoder": {i: {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                     "single_word": False, "special": True} for i, t in added.items()},
    }


def export(model, tok_path, data_license, out_dir):
    check_chat_template()
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.to("cpu", torch.bfloat16).save_pretrained(tmp)
        model.float()
        tensors = load_file(f"{tmp}/model.safetensors")
        kept = {k: v.contiguous() for k, v in sorted(tensors.items()) if not k.endswith(DERIVED)}
        assert all(v.dtype == torch.bfloat16 for v in kept.values())
        save_file(kept, f"{out_dir}/model.safetensors", metadata={"format": "pt"})
        cfg = json.load(open(f"{tmp}/config.json"))
        cfg.pop("_experts_implementation", None)
        json.dump(cfg, open(f"{out_dir}/config.json", "w"), indent=2)
        if os.path.exists(f"{tmp}/generation_config.json"):
            shutil.copy(f"{tmp}/generation_config.json", f"{out_dir}/generation_config.json")
    shutil.copy(tok_path, f"{out_dir}/tokenizer.model")
    json.dump(tokenizer_config(spm_tok.Tok(tok_path)), open(f"{out_dir}/tokenizer_config.json", "w"), indent=2)
    with open(f"{out_dir}/LICENSE", "w") as f:
        f.write(NOTICE_HEAD + open(data_license).read().strip() + "\n" + NOTICE_TAIL)
    return {k: list(v.shape) for k, v in kept.items()}


NOTICE_HEAD = """Notices for the libminimax demo model (models/demo)

1. Training data. The weights and tokenizer were trained on text derived from the English
   MR-NIAH dialogues by MiniMax AI (mr-niah-english-20k.jsonl), used under the MIT License:

"""
NOTICE_TAIL = """
2. Training code. The model was trained with Hugging Face transformers' MiniMaxForCausalLM
   (Apache License 2.0, https://www.apache.org/licenses/LICENSE-2.0); tools/train_demo/patches.py
   adapts part of its modeling_minimax.py (Copyright 2025 MiniMaxAI and HuggingFace Inc. teams).
   No transformers code is part of this folder.
"""
