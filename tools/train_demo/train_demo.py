#!/usr/bin/env python3
"""Builds the bundled demo model (models/demo) and its test data (tests/data/demo) from a seed.

  prepare: copy the dialogue file into the work folder (so it can travel to a GPU machine)
  run:     selftest -> tokenizer -> train -> export -> evaluate -> model card

See README.md beside this file for the commands and what each stage checks.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

DATA_NAME = "mr-niah-english-20k.jsonl"
DEFAULT_DATA = os.path.join(REPO, "..", "shared", "data", DATA_NAME)
DEFAULT_WORK = os.path.join(HERE, "scratch")


def make_logger(path):
    f = open(path, "a", buffering=1)

    def log(msg):
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        f.write(line + "\n")
    return log


def prepare(args):
    os.makedirs(args.work, exist_ok=True)
    for name in (DATA_NAME, "LICENSE-MR-NIAH"):
        shutil.copy(os.path.join(os.path.dirname(args.data), name), os.path.join(args.work, name))
    print(f"copied the dialogues and their license into {args.work}")


def run(args):
    import numpy as np
    import corpus
    import selftest
    import spm_tok
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.test_dir, exist_ok=True)
    log = make_logger(os.path.join(args.out, "train_demo.log"))
    log(f"args: {vars(args)}")
    data = args.data if os.path.exists(args.data) else os.path.join(args.work, DATA_NAME)
    license_file = os.path.join(os.path.dirname(data), "LICENSE-MR-NIAH")
    meta = {"seed": args.seed, "preset": args.preset, "vocab": args.vocab,
            "data_sha256": hashlib.sha256(open(data, "rb").read()).hexdigest()}

    selftest.run()
    log("selftest passed: patched transformers == model-spec reference")

    dlg = corpus.Dialogues(data, np.random.default_rng(args.seed))
    lines = dlg.training_lines() + corpus.PASSKEY_INTROS + corpus.PASSKEY_QUESTIONS + corpus.PASSKEY_ACKS \
        + corpus.SYSTEM_PROMPTS + [corpus.USER, corpus.AI, corpus.SYSTEM]
    os.makedirs(args.work, exist_ok=True)
    spm_tok.train(lines, os.path.join(args.work, "tokenizer"), args.vocab)
    args.tok = os.path.join(args.work, "tokenizer.model")
    tok = spm_tok.Tok(args.tok)
    meta["train_text_tokens"] = sum(len(tok.encode(corpus.render_chat([("user", u), ("assistant", a)])))
                                    for u, a in dlg.pool)
    log(f"tokenizer: {tok.vocab_size} pieces; held out: {[u[:50] for u, _ in dlg.heldout]}; "
        f"{len(dlg.pool)} training conversations, {len(dlg.sentences)} filler sentences")

    import torch
    import training
    args.data = data
    t0 = time.time()
    model, steps = training.train(args, log)
    p = training.PRESETS[args.preset]
    meta.update(steps=steps, train_seconds=round(time.time() - t0), batch=p["batch"], seq=p["seq"],
                lr=p["lr"], warmup=p["warmup"], device=torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                params=sum(t.numel() for t in model.parameters()))

    import export
    shapes = export.export(model, args.tok, license_file, args.model_dir)
    log(f"exported {len(shapes)} tensors to {args.model_dir}")
    del model
    json.dump(meta, open(os.path.join(args.out, "meta.json"), "w"), indent=1)
    evaluate(args, log)
    log(f"done; total {time.time() - t0:.0f}s")


def evaluate(args, log=None):
    """Measures models/demo, writes the test data and results.json, then the model card."""
    import card
    import evaluation
    log = log or make_logger(os.path.join(args.out, "train_demo.log"))
    data = args.data if os.path.exists(args.data) else os.path.join(args.work, DATA_NAME)
    meta = json.load(open(os.path.join(args.out, "meta.json")))
    card.write(args.model_dir, meta)  # a card exists even if the measurements below fail
    try:
        results = evaluation.evaluate(args.model_dir, os.path.join(args.model_dir, "tokenizer.model"), data,
                                      meta["seed"], args.test_dir, args.out, log, args.long, args.device,
                                      n_passkey=args.n_passkey, n_long=args.n_long)
    except Exception as e:  # keep the trained model and whatever was measured
        import traceback
        log("evaluation failed:\n" + traceback.format_exc())
        path = os.path.join(args.out, "results.json")
        results = json.load(open(path)) if os.path.exists(path) else {}
        results["error"] = repr(e)
    meta["results"] = results
    json.dump(meta, open(os.path.join(args.out, "meta.json"), "w"), indent=1)
    card.write(args.model_dir, meta)
    log("wrote the model card")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare")
    pp.add_argument("--data", default=DEFAULT_DATA)
    pp.add_argument("--work", default=DEFAULT_WORK)
    pr = sub.add_parser("run", help="train, export and evaluate")
    pe = sub.add_parser("evaluate", help="re-measure models/demo (needs WORK/out/meta.json from run)")
    for p in (pr, pe):
        p.add_argument("--data", default=DEFAULT_DATA, help="MR-NIAH English jsonl (else WORK/" + DATA_NAME + ")")
        p.add_argument("--work", default=DEFAULT_WORK)
        p.add_argument("--device", default="cuda")
        p.add_argument("--model-dir", default=os.path.join(REPO, "models", "demo"))
        p.add_argument("--test-dir", default=os.path.join(REPO, "tests", "data", "demo"))
        p.add_argument("--out", default=os.path.join(DEFAULT_WORK, "out"), help="log, results.json, meta.json")
        p.add_argument("--long", type=int, nargs="*", default=[16384, 32768, 65536],
                       help="pass-key lengths beyond training")
        p.add_argument("--n-passkey", type=int, default=100, help="documents in the 2k-8k accuracy figure")
        p.add_argument("--n-long", type=int, default=20, help="documents per long length")
    pr.add_argument("--preset", default="demo", choices=["demo", "tiny"])
    pr.add_argument("--seed", type=int, default=1234)
    pr.add_argument("--vocab", type=int, default=4096)
    pr.add_argument("--steps", type=int, default=0, help="0: as many as fit --budget-s")
    pr.add_argument("--budget-s", type=float, default=420.0, help="training time budget (seconds)")
    pr.add_argument("--workers", type=int, default=6)
    args = ap.parse_args()
    {"prepare": prepare, "run": run, "evaluate": evaluate}[args.cmd](args)


if __name__ == "__main__":
    main()
