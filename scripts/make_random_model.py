#!/usr/bin/env python3
"""Write a Hugging Face-style GPT-2 directory with random weights of a real GPT-2's shapes,
for benchmarks (real weights cannot be downloaded everywhere).

usage: python3 scripts/make_random_model.py OUT_DIR [--size 124M|355M|774M|1558M] [--seed N]
                                            [--vocab-dir tests/data/model]

OUT_DIR receives config.json, model.safetensors (F32, Conv1D layout as Hugging Face stores
it), vocab.json and merges.txt (GPT-2's, copied from --vocab-dir). Convert it with
scripts/convert.py like any checkpoint.

Standard library only, and fast: the weights are seeded random bytes whose sign/exponent
byte is rewritten with bytes.translate so every value lies in +-[2^-7, 2^-5) (typical of
GPT-2's weights); layernorm weights are 1, biases are small.
"""
import argparse
import json
import os
import random
import shutil
import struct
import sys

SIZES = {  # n_layer, n_head, n_embd
    "124M": (12, 12, 768), "355M": (24, 16, 1024), "774M": (36, 20, 1280), "1558M": (48, 25, 1600),
}
N_VOCAB, N_CTX = 50257, 1024

# byte 3 of a little-endian float32 is sign + the top 7 exponent bits: 0x3C -> 2^-7..2^-6,
# with the top mantissa bit in byte 2 deciding 2^-7 or 2^-6 ranges
EXP_BYTE = bytes((0x3C | (b & 0x80)) for b in range(256))


def random_floats(rng, n):
    """n float32 values, as bytes; made in chunks (one call may not exceed 2^31 bits)."""
    raw = bytearray()
    for start in range(0, n, 1 << 24):
        m = min(n - start, 1 << 24)
        if hasattr(rng, "randbytes"):
            chunk = bytearray(rng.randbytes(4 * m))
        else:  # Python 3.8
            chunk = bytearray(rng.getrandbits(32 * m).to_bytes(4 * m, "little"))
        chunk[3::4] = bytes(chunk[3::4]).translate(EXP_BYTE)
        raw += chunk
    return raw


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--size", choices=sorted(SIZES), default="124M")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--vocab-dir", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "model"))
    args = ap.parse_args()
    L, NH, C = SIZES[args.size]
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    shapes = [("transformer.wte.weight", [N_VOCAB, C]), ("transformer.wpe.weight", [N_CTX, C])]
    for i in range(L):
        p = "transformer.h.%d." % i
        shapes += [(p + "ln_1.weight", [C]), (p + "ln_1.bias", [C]),
                   (p + "attn.c_attn.weight", [C, 3 * C]), (p + "attn.c_attn.bias", [3 * C]),
                   (p + "attn.c_proj.weight", [C, C]), (p + "attn.c_proj.bias", [C]),
                   (p + "ln_2.weight", [C]), (p + "ln_2.bias", [C]),
                   (p + "mlp.c_fc.weight", [C, 4 * C]), (p + "mlp.c_fc.bias", [4 * C]),
                   (p + "mlp.c_proj.weight", [4 * C, C]), (p + "mlp.c_proj.bias", [C])]
    shapes += [("transformer.ln_f.weight", [C]), ("transformer.ln_f.bias", [C])]
    header, off = {}, 0
    for name, shape in shapes:
        n = 1
        for s in shape:
            n *= s
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + 4 * n]}
        off += 4 * n
    hj = json.dumps(header).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    one = struct.pack("<f", 1.0)
    with open(os.path.join(args.out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj)
        for name, shape in shapes:
            n = 1
            for s in shape:
                n *= s
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                f.write(one * n)
            else:
                f.write(random_floats(rng, n))
    cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
           "n_layer": L, "n_head": NH, "n_embd": C, "n_positions": N_CTX, "n_ctx": N_CTX,
           "vocab_size": N_VOCAB, "layer_norm_epsilon": 1e-5, "bos_token_id": 50256,
           "eos_token_id": 50256, "_name_or_path": "random-gpt2-" + args.size}
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(os.path.join(args.vocab_dir, name), os.path.join(args.out, name))
    sys.stderr.write("wrote %s: random GPT-2 %s (%d layers, %d heads, %d wide), %.0f MB\n"
                     % (args.out, args.size, L, NH, C, off / 1e6))


if __name__ == "__main__":
    main()
