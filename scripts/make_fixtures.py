#!/usr/bin/env python3
"""Copy the subset of the golden reference data that the tests use into tests/data.

usage: python3 scripts/make_fixtures.py [SHARED_DIR]   (default ../shared)

Most files are copied as they are (see tests/data/README.md). The logits are large (one
50,257-float row per position), so only some rows are kept: every row of the short prompts
and the first, middle and last row of the long ones, plus the per-position summaries
(argmax, top-5, logsumexp) of every position and Hugging Face's loss.
"""
import json
import os
import shutil
import struct
import sys

ROWS = {"p0": "all", "p1": "all", "p2": "all", "p3": [0, 15, 30], "p4": [0, 50, 99], "p5": [0, 5, 11]}


def main():
    shared = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared")
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")
    gold = os.path.join(shared, "golden")
    copies = {
        "model/model/config.json": "model/config.json", "model/model/vocab.json": "model/vocab.json",
        "model/model/merges.txt": "model/merges.txt", "model/model/model.safetensors": "model/model.safetensors",
        "model/model/pytorch_model.bin": "model/pytorch_model.bin", "model/model/make_model.json": "model/make_model.json",
        "tokenizer/public.jsonl": "public.jsonl", "tokenizer/decode_cases.jsonl": "decode_cases.jsonl",
        "tokenizer/disputed.jsonl": "disputed.jsonl",
        "model/greedy.json": "golden/greedy.json", "model/beam.json": "golden/beam.json",
        "model/processors.json": "golden/processors.json", "model/processors.bin": "golden/processors.bin",
    }
    for src, dst in copies.items():
        os.makedirs(os.path.dirname(os.path.join(root, dst)), exist_ok=True)
        shutil.copyfile(os.path.join(gold, src), os.path.join(root, dst))
    index = json.load(open(os.path.join(gold, "model", "logits", "index.json")))
    vocab = index["vocab"]
    out = {"vocab": vocab, "prompts": []}
    blob = bytearray()
    for name, p in index["prompts"].items():
        data = open(os.path.join(gold, "model", "logits", p["file"]), "rb").read()
        rows = range(len(p["positions"])) if ROWS[name] == "all" else ROWS[name]
        kept = []
        for r in rows:
            kept.append({"position": p["positions"][r], "offset": len(blob) // 4})
            blob += data[r * vocab * 4:(r + 1) * vocab * 4]
        out["prompts"].append({
            "id": name, "tokens": p["tokens"], "hf_loss": p["hf_loss"], "rows": kept,
            "summary": [{"argmax": s["argmax"], "top5_ids": s["top5_ids"], "top5_logits": s["top5_logits"],
                         "logsumexp": s["logsumexp"]} for s in p["per_position_summary"]],
        })
    with open(os.path.join(root, "golden", "logits.bin"), "wb") as f:
        f.write(blob)
    with open(os.path.join(root, "golden", "logits.json"), "w") as f:
        json.dump(out, f, indent=1)
    print("wrote tests/data (logits: %d rows, %.1f MB)" % (len(blob) // 4 // vocab, len(blob) / 1e6))


if __name__ == "__main__":
    main()
