"""Training and evaluation text for the demo model, all in the MiniMax-Text-01 chat format.

Sources: the English MR-NIAH dialogues (MIT), synthetic pass-key documents whose filler is made
of sentences from those dialogues, and "repeat after me" requests built from their words. Everything is a pure function of a numpy Generator, so a seed
fixes the text exactly.

The 19 MR-NIAH records share one "haystack" of 16 user/assistant conversations and differ only in
three inserted "needle" conversations and the final question. Holding out two whole records would
leave no unseen text, so two of the haystack conversations are held out everywhere instead (never
in the tokenizer or training text) and serve as the perplexity text.
"""
import json
import re

BOS, EOS = "<beginning_of_sentence>", "<end_of_sentence>"
BOD, EOD = "<begin_of_document>", "<end_of_document>"
SPECIALS = [BOS, EOS, EOD, BOD]  # fixed order: ids 1..4 of the tokenizer (see spm_tok.py)
USER, AI, SYSTEM = "user name=user", "ai name=assistant", "system ai_setting=assistant"
GEN_PROMPT = f"{BOS}{AI}\n"

SYSTEM_PROMPTS = ["You are a helpful assistant.", "You are MiniMax, a helpful AI assistant.",
                  "You are a concise assistant. Answer briefly."]
PASSKEY_INTROS = ["There is a pass key hidden in the text below. Find it and remember it.",
                  "Read the following text carefully and remember the pass key in it.",
                  "Below is a long text. Somewhere in it is a pass key."]
PASSKEY_QUESTIONS = ["What is the pass key?", "What is the pass key in the text above?",
                     "Tell me the pass key.", "Which number is the pass key?"]
COPY_ASKS = ["Repeat after me exactly:", "Copy this text:", "Please repeat the following words:",
             "Say this back to me:"]
PASSKEY_ACKS = ["I have read the text.", "I have read it and remembered the pass key."]


def turn(header, text):
    return f"{BOS}{header}\n{text}{EOS}\n"


def render_chat(messages, add_generation_prompt=False):
    """[(role, text)] -> chat text, role in system/user/assistant (model-spec §9, Text-01)."""
    headers = {"system": SYSTEM, "user": USER, "assistant": AI}
    out = "".join(turn(headers[r], t) for r, t in messages)
    return out + (GEN_PROMPT if add_generation_prompt else "")


class Dialogues:
    """The MR-NIAH records split into conversations (one user message + its reply)."""

    def __init__(self, path, rng, heldout_chars=(8000, 16000)):
        records = [json.loads(line) for line in open(path, encoding="utf-8")]
        counts = {}
        self.records = []
        for rec in records:
            msgs = rec["messages"]
            exch = [(msgs[i]["content"], msgs[i + 1]["content"]) for i in range(0, len(msgs) - 1, 2)]
            self.records.append({"exchanges": exch, "question": msgs[-1]["content"], "label": rec["label"]})
            for e in set(exch):
                counts[e] = counts.get(e, 0) + 1
        # Haystack: conversations present in every record, kept in file order.
        first = self.records[0]["exchanges"]
        haystack = [e for e in first if counts[e] == len(records)]
        candidates = [(a, b) for i, a in enumerate(haystack) for b in haystack[i + 1:]
                      if heldout_chars[0] <= sum(map(len, a + b)) <= heldout_chars[1]]
        pick = candidates[int(rng.integers(len(candidates)))]
        self.heldout = list(pick)
        self.haystack = [e for e in haystack if e not in self.heldout]
        needles = []
        for rec in self.records:
            rec["needles"] = [e for e in rec["exchanges"] if counts[e] < len(records)]
            needles += [e for e in rec["needles"] if e not in needles]
        self.pool = self.haystack + needles  # every conversation the model may train on
        self.sentences = split_sentences(t for e in self.pool for t in e)

    def heldout_text(self):
        return render_chat([m for u, a in self.heldout for m in (("user", u), ("assistant", a))])

    def training_lines(self):
        """Plain text lines for tokenizer training (no held-out text)."""
        lines = []
        for u, a in self.pool:
            lines += u.split("\n") + a.split("\n")
        for rec in self.records:
            lines += [rec["question"]] + rec["label"].split("\n")
        return [ln for ln in lines if ln.strip()]


def split_sentences(texts):
    """Sentences of 20..300 characters, one line each, for pass-key filler."""
    out = []
    for t in texts:
        for line in t.split("\n"):
            for s in re.split(r"(?<=[.!?])\s+", line.strip()):
                s = s.strip(" #*-")
                if 20 <= len(s) <= 300 and s not in out:
                    out.append(s)
    return out


def passkey_doc(rng, sentences, sent_tokens, target_tokens, depth=None):
    """A chat whose user text hides a pass key among filler sentences, then asks for it.

    sent_tokens[i] is the token count of " " + sentences[i]; the document lands within a few
    percent of target_tokens. Returns (prompt ending with the generation prompt, answer, key, depth).
    """
    key = str(int(rng.integers(10000, 100000)))
    needle = f"The pass key is {key}. Remember it. {key} is the pass key."
    budget = target_tokens - 70  # chat headers, intro, needle, question and answer
    filler, used = [], 0
    while used < budget:
        i = int(rng.integers(len(sentences)))
        filler.append(sentences[i])
        used += sent_tokens[i] + 0.3  # joins and paragraph breaks
    depth = float(rng.uniform(0.05, 0.95)) if depth is None else depth
    filler.insert(int(round(depth * len(filler))), needle)
    paras, i = [], 0
    while i < len(filler):
        n = int(rng.integers(3, 9))
        paras.append(" ".join(filler[i:i + n]))
        i += n
    doc = "\n\n".join(paras)
    intro = PASSKEY_INTROS[int(rng.integers(len(PASSKEY_INTROS)))]
    question = PASSKEY_QUESTIONS[int(rng.integers(len(PASSKEY_QUESTIONS)))]
    if rng.random() < 0.5:  # the question closes the document turn
        msgs = [("user", f"{intro}\n\n{doc}\n\n{question}")]
    else:  # the question is its own final user turn
        ack = PASSKEY_ACKS[int(rng.integers(len(PASSKEY_ACKS)))]
        msgs = [("user", f"{intro}\n\n{doc}"), ("assistant", ack), ("user", question)]
    return render_chat(msgs, add_generation_prompt=True), f"The pass key is {key}.", key, depth


def passkey_training_parts(rng, sentences, sent_tokens, target_tokens):
    """A pass-key document cut into (text, role) parts, role in filler/needle/answer, so that
    training can weight them: each cut sits before a space or after a newline, where the
    tokenizer never joins characters into one piece, so the parts encode as the whole does."""
    prompt, answer, key, _ = passkey_doc(rng, sentences, sent_tokens, target_tokens)
    s = prompt.index(f"The pass key is {key}. Remember it.")
    e = prompt.index("is the pass key.", s) + len("is the pass key.")
    s -= prompt[s - 1] == " "
    return [(prompt[:s], "filler"), (prompt[s:e], "needle"), (prompt[e:], "filler"),
            (answer + EOS + "\n", "answer")]


def copy_parts(rng, words):
    """A user asks for 4..40 random words and numbers back; the reply repeats them. Dense
    practice of looking back and copying, the skill pass-key retrieval needs at long range."""
    toks = []
    for _ in range(int(rng.integers(4, 41))):
        if rng.random() < 0.3:
            toks.append(str(int(rng.integers(0, 10 ** int(rng.integers(1, 8))))))
        else:
            toks.append(words[int(rng.integers(len(words)))])
    text = " ".join(toks)
    ask = COPY_ASKS[int(rng.integers(len(COPY_ASKS)))]
    return [(maybe_system(rng) + render_chat([("user", f"{ask}\n{text}")], add_generation_prompt=True), "filler"),
            (text + EOS + "\n", "copy")]


def words_of(sentences):
    return sorted({w for s in sentences for w in s.split() if w.isascii()})


def record_text(rng, dialogues, exch_tokens, target_tokens):
    """One MR-NIAH record re-sampled to ~target_tokens: a random subset of the (training)
    haystack with the record's needle conversations kept in order, then its question and answer."""
    rec = dialogues.records[int(rng.integers(len(dialogues.records)))]
    order = rng.permutation(len(dialogues.haystack))
    budget = target_tokens - sum(exch_tokens[e] for e in rec["needles"]) - 200
    hay, used = [], 0
    for j in order:
        e = dialogues.haystack[j]
        if used + exch_tokens[e] > budget:
            continue
        hay.append(e)
        used += exch_tokens[e]
    slots = sorted(rng.choice(len(hay) + 1, size=len(rec["needles"]), replace=True))
    exch = list(hay)
    for k, (slot, e) in enumerate(zip(slots, rec["needles"])):
        exch.insert(slot + k, e)
    msgs = [m for u, a in exch for m in (("user", u), ("assistant", a))]
    msgs += [("user", rec["question"]), ("assistant", rec["label"])]
    return maybe_system(rng) + render_chat(msgs)


def chat_text(rng, dialogues):
    """1..4 random training conversations as one chat."""
    n = int(rng.integers(1, 5))
    idx = rng.choice(len(dialogues.pool), size=n, replace=False)
    msgs = [m for j in idx for m in (("user", dialogues.pool[j][0]), ("assistant", dialogues.pool[j][1]))]
    return maybe_system(rng) + render_chat(msgs)


def maybe_system(rng):
    if rng.random() < 0.2:
        return render_chat([("system", SYSTEM_PROMPTS[int(rng.integers(len(SYSTEM_PROMPTS)))])])
    return ""
