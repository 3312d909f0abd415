#!/usr/bin/env python3
"""Generates the tokenizer test fixtures under tests/data/tokenizer/.

Trains a small byte-level BPE (Hugging Face `tokenizers`) and a small sentencepiece model on a
slice of the MR-NIAH dialogues plus multilingual text, and records what the Python packages
answer for a list of tricky strings, so the C++ tokenizers can be checked against them. Also
renders conversations with the real MiniMax-M1 chat template (the same jinja2 rendering
transformers uses) as expected chat-format output.

Run from the repository root:  python3 tools/tokenizer_fixtures/make_tokenizer_fixtures.py
Needs: tokenizers, sentencepiece, transformers (jinja2). Deterministic: rerunning gives the
same files.
"""
import copy
import io
import json
import shutil
import sys
from pathlib import Path

import sentencepiece as spm
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers.utils.chat_template_utils import render_jinja_template

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
OUT = REPO / "tests" / "data" / "tokenizer"

FAMILY_SPECIALS = ["<beginning_of_sentence>", "<end_of_sentence>", "<end_of_document>",
                   "<begin_of_document>"]
# The pre-tokenizer pattern of GPT-4-style tokenizers (used with a Split step before ByteLevel).
GPT4_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

MULTILINGUAL = [
    "你好，世界！这是一个测试。我们今天讨论长文本的处理。人工智能正在改变世界。",
    "日本語のテキストとカタカナ、ひらがな。東京は日本の首都です。",
    "한국어 텍스트입니다. 서울은 한국의 수도입니다.",
    "Ελληνικά κείμενα. Кириллица и русский язык. العربية لغة جميلة. עברית היא שפה.",
    "हिन्दी भाषा। ภาษาไทย Tiếng Việt có dấu: Hà Nội, Thành phố Hồ Chí Minh.",
    "emoji 😀😃😄😁 👍 👍🏽 👍🏿 👩‍👩‍👧‍👦 👨‍💻 🏳️‍🌈 ❤️ 🇯🇵 🇫🇷",
    "combining marks: e\u0301 a\u0308 n\u0303 o\u0302 Z\u0351\u0352\u0353 café naïve",
    "numbers 0 1 12 123 1234 12345 3.14159 1,000,000 2025-01-14 ١٢٣ ௧௨",
]

TRICKY = [
    "",
    "Hello world",
    "Hello, world! How're you? I'd've thought they'll come; she's here, we've won, I'm in.",
    "don't DON'T Don'T it's IT'S 's 'll",
    "  two leading spaces",
    "trailing spaces   ",
    "multiple     spaces      between",
    "\ttab\tseparated\t\tcolumns",
    "line1\nline2\n\n\nline5\r\nwindows\rcr",
    "\n",
    "\n\n \n  \n   x",
    " ",
    "1234567890 3.14159 1,000,000 2025-01-14 v1.2.3",
    "数字123和中文混合abc",
    "你好，世界！这是一个测试。",
    "日本語のテキストとカタカナ",
    "한국어 텍스트",
    "emoji 😀😃😄 👍🏽 👩‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇯🇵",
    "combining: e\u0301 a\u0308 n\u0303 Z\u0351\u0352\u0353",
    "Ελληνικά Кириллица العربية עברית हिन्दी",
    "mixed: hello世界123🙂abc Δ",
    "<beginning_of_sentence>user name=user\nHi there<end_of_sentence>\n",
    "text<end_of_sentence>more text",
    "<end_of_document><begin_of_document>",
    "<end_of_sentence",
    "<<end_of_sentence>>",
    "<beginning_of_sentence><end_of_sentence>",
    "a tool <think> tag and <think>again",
    "lstrip a   <mask> b",
    "\u00a0nbsp and\u3000ideographic space",
    "zero\u200bwidth\u200djoiner",
    "`~!@#$%^&*()_+-=[]{}|;:\",./<>?",
    "\x00 control \x01\x1f\x7f",
    "a" * 300,
    " " * 700 + "end",
    "\U0001F600" * 40,
]


def dialogue_texts(limit_chars):
    texts, total = [], 0
    with open(SHARED / "data" / "mr-niah-english-20k.jsonl", encoding="utf-8") as f:
        for line in f:
            for m in json.loads(line)["messages"]:
                texts.append(m["content"])
                total += len(m["content"])
                if total >= limit_chars:
                    return texts
    return texts


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def write_lists(path, **lists):
    """A JSON object of lists, one element per line: small and still easy to read and diff."""
    parts = []
    for key, items in lists.items():
        if isinstance(items, list):
            body = ",\n".join("  " + json.dumps(x, ensure_ascii=False) for x in items)
            parts.append(f' "{key}": [\n{body}\n ]')
        else:
            parts.append(f' "{key}": {json.dumps(items)}')
    path.write_text("{\n" + ",\n".join(parts) + "\n}\n", encoding="utf-8")


# ---- byte-level BPE ------------------------------------------------------------------------

def train_bpe(corpus):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    # Added after training, as in the real release: their ids follow the vocabulary.
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in FAMILY_SPECIALS])
    tok.add_special_tokens([AddedToken("<mask>", special=True, lstrip=True, normalized=False)])
    tok.add_tokens([AddedToken("<think>", special=False, normalized=False)])
    return tok


def added_tokens_decoder(tok):
    out = {}
    for id_, t in sorted(tok.get_added_tokens_decoder().items()):
        out[str(id_)] = {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized,
                         "rstrip": t.rstrip, "single_word": t.single_word, "special": t.special}
    return out


def expected_cases(tok, texts):
    cases = []
    for text in texts:
        tok.encode_special_tokens = False
        ids = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = True
        plain = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = False
        cases.append({"text": text, "ids": ids, "ids_plain": plain,
                      "decoded": tok.decode(ids, skip_special_tokens=False)})
    return cases


def make_bpe(corpus):
    tok = train_bpe(corpus)
    config = {"add_prefix_space": False, "bos_token": "<beginning_of_sentence>",
              "eos_token": {"content": "<end_of_sentence>", "special": True},
              "unk_token": "<end_of_document>", "tokenizer_class": "GPT2Tokenizer",
              "added_tokens_decoder": added_tokens_decoder(tok)}

    json_dir = OUT / "bpe_json"
    json_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(json_dir / "tokenizer.json"))
    write_json(json_dir / "tokenizer_config.json", config)

    files_dir = OUT / "bpe_files"
    files_dir.mkdir(parents=True, exist_ok=True)
    tok.model.save(str(files_dir))
    write_json(files_dir / "tokenizer_config.json", config)
    # The vocab.json + merges.txt layout must mean the same tokenizer as tokenizer.json.
    check = Tokenizer(models.BPE.from_file(str(files_dir / "vocab.json"),
                                           str(files_dir / "merges.txt")))
    check.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    check.decoder = decoders.ByteLevel()
    check.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in FAMILY_SPECIALS])
    check.add_special_tokens([AddedToken("<mask>", special=True, lstrip=True, normalized=False)])
    check.add_tokens([AddedToken("<think>", special=False, normalized=False)])

    texts = TRICKY + [corpus[3][:1500]]
    cases = expected_cases(tok, texts)
    assert cases == expected_cases(check, texts), "vocab.json + merges.txt disagree with tokenizer.json"
    write_lists(OUT / "bpe_cases.json", cases=cases)

    # GPT-4 style: Split(regex) then ByteLevel without its own regex, merges written as
    # "a b" strings, ignore_merges on; the same vocabulary.
    spec = json.loads(tok.to_str())
    spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": GPT4_PATTERN}, "behavior": "Isolated",
         "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
         "use_regex": False}]}
    spec["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m
                               for m in spec["model"]["merges"]]
    spec["model"]["ignore_merges"] = True
    gpt4 = Tokenizer.from_str(json.dumps(spec))
    gpt4_dir = OUT / "bpe_gpt4"
    gpt4_dir.mkdir(parents=True, exist_ok=True)
    with open(gpt4_dir / "tokenizer.json", "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False)
    write_lists(OUT / "bpe_gpt4_cases.json", cases=expected_cases(gpt4, texts))


# ---- sentencepiece -------------------------------------------------------------------------

def read_varint(buf, pos):
    value, shift = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, pos


def varint(value):
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        out.append(b | (0x80 if value else 0))
        if not value:
            return bytes(out)


def proto_fields(buf):
    """Yields (field number, wire type, raw bytes of the whole field) of a protobuf message."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = read_varint(buf, pos)
        wire = key & 7
        if wire == 0:
            _, pos = read_varint(buf, pos)
            payload = None
        elif wire == 1:
            pos += 8
            payload = None
        elif wire == 2:
            n, pos = read_varint(buf, pos)
            payload = buf[pos:pos + n]
            pos += n
        elif wire == 5:
            pos += 4
            payload = None
        else:
            raise ValueError("unexpected wire type")
        yield key >> 3, wire, buf[start:pos], payload


def user_defined_as_unused(model_bytes):
    """The model with USER_DEFINED pieces (type 4) turned UNUSED (type 5): sentencepiece then
    no longer matches them in text, which is how "parse_special = false" encodes them."""
    out = bytearray()
    for field, wire, raw, payload in proto_fields(model_bytes):
        if field == 1 and wire == 2:
            piece_type = 1
            rest = bytearray()
            for f, w, r, _ in proto_fields(payload):
                if f == 3 and w == 0:
                    piece_type, _ = read_varint(r, 1)
                else:
                    rest += r
            if piece_type == 4:
                piece_type = 5
            body = bytes(rest) + varint((3 << 3) | 0) + varint(piece_type)
            out += varint((1 << 3) | 2) + varint(len(body)) + body
        else:
            out += raw
    return bytes(out)


def make_spm(corpus):
    spm_dir = OUT / "spm"
    spm_dir.mkdir(parents=True, exist_ok=True)
    sentences = []
    for t in corpus + MULTILINGUAL * 3:
        sentences += [s for s in t.split("\n") if s.strip()]
    # Written through model_writer so that no file path ends up inside the model.
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=2000,
        model_type="bpe", byte_fallback=True, character_coverage=0.995,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        user_defined_symbols=FAMILY_SPECIALS, split_digits=True, num_threads=1,
        minloglevel=2)
    model_bytes = model.getvalue()
    (spm_dir / "tokenizer.model").write_bytes(model_bytes)
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    plain = spm.SentencePieceProcessor(model_proto=user_defined_as_unused(model_bytes))

    cases = []
    for text in TRICKY + [corpus[3][:1500]]:
        if "<mask>" in text or "<think>" in text:
            continue
        ids = sp.encode(text)
        cases.append({"text": text, "ids": ids, "ids_plain": plain.encode(text),
                      "pieces": [sp.id_to_piece(i) for i in ids], "decoded": sp.decode(ids)})
    pieces = [{"id": i, "piece": sp.id_to_piece(i), "control": sp.is_control(i),
               "unknown": sp.is_unknown(i), "byte": sp.is_byte(i)}
              for i in range(sp.get_piece_size())]
    write_lists(OUT / "spm_cases.json", vocab_size=sp.get_piece_size(), bos_id=sp.bos_id(),
                eos_id=sp.eos_id(), unk_id=sp.unk_id(), cases=cases, pieces=pieces)


# ---- chat template -------------------------------------------------------------------------

CONVERSATIONS = [
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hello!"}]}],
     "add_generation_prompt": True},
    {"messages": [
        {"role": "system", "content": [{"type": "text", "text": "You are a helpful assistant."}]},
        {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "4"}]},
        {"role": "user", "content": [{"type": "text", "text": "And 3+3?\nThink step by step."}]}],
     "add_generation_prompt": True},
    {"messages": [
        {"role": "system", "content": [{"type": "text", "text": "First system part. "}]},
        {"role": "user", "content": [{"type": "text", "text": "你好 👋"}]},
        {"role": "system", "content": [{"type": "text", "text": "Second system part."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Part one, "},
                                          {"type": "text", "text": "part two."}]}],
     "add_generation_prompt": False},
    {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "<tool_calls>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_calls>"}]},
        {"role": "tool", "content": [{"name": "get_weather", "text": "{\"temp_c\": 21}"},
                                     {"name": "get_time", "text": "12:00"}]}],
     "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather now — in °C",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"]}}},
               {"name": "get_time", "parameters": {"tz": "UTC", "fmt": None, "n": 1.5, "ok": True}}],
     "add_generation_prompt": True},
    {"messages": [{"role": "assistant", "content": [{"type": "text", "text": "Only me."}]}],
     "add_generation_prompt": False},
    {"messages": [], "add_generation_prompt": True},
]


def make_chat():
    config = json.loads((SHARED / "reference" / "minimax-m1" / "tokenizer_config.json")
                        .read_text(encoding="utf-8"))
    cases = []
    for conv in CONVERSATIONS:
        rendered, _ = render_jinja_template(
            conversations=[conv["messages"]], tools=conv.get("tools"),
            chat_template=config["chat_template"],
            add_generation_prompt=conv["add_generation_prompt"])
        case = copy.deepcopy(conv)
        case["expected"] = rendered[0]
        cases.append(case)
    write_lists(OUT / "chat_m1_cases.json", cases=cases)


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    corpus = dialogue_texts(400_000) + MULTILINGUAL * 5
    make_bpe(corpus)
    make_spm(corpus)
    make_chat()
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT.relative_to(REPO)} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    sys.exit(main())
