"""The demo tokenizer: sentencepiece BPE trained on the training conversations.

Choices, and why:
- the four chat special tokens are user-defined symbols with ids 1..4 (unk is 0), so each is one
  id and sentencepiece itself recognises them inside text;
- no dummy prefix, identity normalisation, whitespace kept: encoding a text equals encoding its
  pieces between special tokens one by one (checked by check_split_invariance), so a runtime may
  split at special tokens first or hand the whole text to sentencepiece and get the same ids;
- byte fallback: any UTF-8 text encodes (newlines become the byte piece <0x0A>);
- digits split one per token, which makes copying a pass key a digit-by-digit copy.
"""
import re

import os

import sentencepiece as spm

from corpus import SPECIALS

SPECIAL_IDS = {tok: i + 1 for i, tok in enumerate(SPECIALS)}
_SPLIT = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")


def train(lines, model_prefix, vocab_size):
    """Trains on `lines` (no newlines inside); writes model_prefix.model. Deterministic."""
    # sentencepiece records model_prefix inside the model file: train from the target folder
    # with a bare name, so that no path of the training machine ends up in the shipped model.
    folder, name = os.path.split(os.path.abspath(model_prefix))
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        _train_here(lines, name, vocab_size)
    finally:
        os.chdir(cwd)


def _train_here(lines, model_prefix, vocab_size):
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=model_prefix, vocab_size=vocab_size,
        model_type="bpe", character_coverage=1.0, byte_fallback=True, split_digits=True,
        user_defined_symbols=SPECIALS, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
        normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False,
        max_sentence_length=1 << 16, input_sentence_size=0, shuffle_input_sentence=False,
        num_threads=1, minloglevel=2)


class Tok:
    def __init__(self, model_file):
        self.sp = spm.SentencePieceProcessor(model_file=model_file)
        for tok, i in SPECIAL_IDS.items():
            if self.sp.id_to_piece(i) != tok:
                raise ValueError(f"{model_file}: id {i} is {self.sp.id_to_piece(i)!r}, not {tok}")
        self.vocab_size = self.sp.get_piece_size()
        self.bos, self.eos = SPECIAL_IDS[SPECIALS[0]], SPECIAL_IDS[SPECIALS[1]]

    def encode(self, text):
        return self.sp.encode(text)

    def encode_split(self, text):
        """Encodes the text between special tokens piece by piece (what a runtime may do)."""
        ids = []
        for part in _SPLIT.split(text):
            if part in SPECIAL_IDS:
                ids.append(SPECIAL_IDS[part])
            elif part:
                ids += self.sp.encode(part)
        return ids

    def decode(self, ids):
        return self.sp.decode(ids)

    def check_split_invariance(self, text):
        a, b = self.encode(text), self.encode_split(text)
        if a != b:
            i = next(k for k in range(min(len(a), len(b))) if a[k] != b[k])
            raise AssertionError(f"whole-text and split encodings differ at token {i}: "
                                 f"{self.sp.id_to_piece(a[i:i + 5])} vs {self.sp.id_to_piece(b[i:i + 5])}")
        if self.decode(a) != text:
            raise AssertionError("decode(encode(text)) != text")
        return a
