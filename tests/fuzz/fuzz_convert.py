#!/usr/bin/env python3
"""Fuzz harness for scripts/convert.py's readers (standard library only).

usage: python3 tests/fuzz/fuzz_convert.py [-t SECONDS] [-n CASES] [--seed S] [--mem-mb MB]
                                          [--case-timeout S] [--artifacts DIR] [--case N] [--replay FILE...]

Each case takes the fixture checkpoint (tests/data/model), mutates one of its files --
model.safetensors (header field edits, bit flips, insertions, deletions, truncation),
pytorch_model.bin (pickle entry edits, pickle byte flips, zip directory edits, compressed
members and zip bombs, the legacy format), config.json (field edits, non-objects), rarely
vocab.json / merges.txt -- and runs the whole conversion in-process up to the bytes it would
write (convert.prepare + write_payloads into a counting sink). The process runs under an
address-space limit (RLIMIT_AS, --mem-mb, default 1024) and each case under a time limit.

The rule: a case ends in ConvertError with a one-line message (what the command line prints
before exiting 1), or in an output whose header the engine accepts. Anything else -- another
exception, MemoryError (also inside a ConvertError's text), a time-out, a case that takes the
peak RSS past --rss-mb (default 768) -- is a finding; its
input is saved under the artifacts directory (default build/fuzz/artifacts) as
convert-<seed>-<case>.<file name>; `--seed S --case N` makes and runs that case again, and
--replay runs such a file in place of the fixture file of that name. Case i of seed S is the same on every run (random.Random("S:i")).
Exits 1 when there were findings.
"""
import argparse
import json
import os
import random
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback
import zipfile
import warnings
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)
sys.path.insert(0, TESTS)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import checkpoints as cp  # noqa: E402
import convert  # noqa: E402

warnings.simplefilter("ignore")  # zipfile warns of the duplicate names some cases make
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class CaseTimeout(BaseException):
    """Raised by the alarm: a BaseException, so no `except Exception` in the converter eats it."""


def _alarm(signum, frame):
    raise CaseTimeout()


# ---- interesting values --------------------------------------------------------------------

INTS = [0, 1, -1, 2, 3, 7, 8, 63, 64, 65, 128, 255, 256, 257, 1023, 1024, 4096, 50256, 50257, 50258,
        65535, 65536, 1 << 18, (1 << 18) + 1, 1 << 20, (1 << 20) + 1, 1 << 24, (1 << 24) + 1,
        1 << 31, (1 << 31) - 1, 1 << 32, 1 << 53, 1 << 62, 1 << 63, (1 << 64) - 1, 1 << 64, 10 ** 40,
        -(1 << 63), 750_000_000, 3_000_000_000]
JSON_ODD = [None, True, False, "", "12", "F32", "gpt2", [], [1], [0, 0], {}, {"a": 1}, 1.5, -0.0, 1e308,
            float("inf"), float("-inf"), float("nan"), 1e-50, "\ud800"]


def odd_value(rng):
    r = rng.random()
    if r < 0.55:
        return rng.choice(INTS)
    if r < 0.65:
        return rng.randrange(-1000, 1 << 20)
    return rng.choice(JSON_ODD)


def mutate_bytes(rng, b, lo=0, hi=None, n=None):
    """Bit flips, byte insertions/deletions/overwrites inside [lo, hi)."""
    b = bytearray(b)
    hi = len(b) if hi is None else min(hi, len(b))
    for _ in range(n or rng.choice((1, 1, 2, 3, 8))):
        if hi <= lo:
            break
        i = rng.randrange(lo, hi)
        op = rng.random()
        if op < 0.4:
            b[i] ^= 1 << rng.randrange(8)
        elif op < 0.6:
            b[i] = rng.choice((0, 0xff, 0x7f, 0x80, rng.randrange(256), ord('"'), ord("["), ord("{"), ord("-")))
        elif op < 0.8:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.choice((1, 1, 2, 4, 16))))
            hi += 1
        else:
            k = rng.choice((1, 1, 2, 4, 16))
            del b[i:i + k]
            hi -= k
    return bytes(b)


def truncate(rng, b):
    cut = rng.choice((rng.randrange(len(b) + 1), rng.randrange(min(len(b), 8192) + 1), len(b) - 1,
                      len(b) - rng.randrange(1, 64)))
    return b[:max(cut, 0)]


# ---- model.safetensors ---------------------------------------------------------------------

class Fixture:
    def __init__(self):
        self.st = cp.fixture_bytes("model.safetensors")
        self.st_header, self.st_data = cp.split_safetensors(self.st)
        self.st_hlen = struct.unpack_from("<Q", self.st, 0)[0]
        self.entries, self.storages, self.root = cp.fixture_entries()
        self.pt = cp.fixture_bytes("pytorch_model.bin")
        self.pkl = cp.torch_pickle(self.entries)
        self.config = cp.fixture_config()
        self.config_raw = cp.fixture_bytes("config.json")


def st_header_edit(rng, fx):
    h = json.loads(json.dumps(fx.st_header))
    names = [n for n in h if n != "__metadata__"]
    for _ in range(rng.choice((1, 1, 2, 3))):
        op = rng.random()
        name = rng.choice(names)
        info = h.get(name)
        if op < 0.35 and isinstance(info, dict):
            field = rng.choice(("dtype", "shape", "data_offsets"))
            r = rng.random()
            if field == "data_offsets" and r < 0.5 and isinstance(info.get(field), list) and info[field]:
                o = list(info[field])
                i = rng.randrange(len(o))
                if _num(o[i]):
                    o[i] = rng.choice((o[i] + rng.choice((-4, -1, 1, 4, 1 << 20)), 0, -o[i], odd_value(rng)))
                info[field] = o
            elif field == "data_offsets" and r < 0.7:
                info[field] = list(h[rng.choice(names)].get("data_offsets", [0, 0]))  # overlap another
            elif field == "shape" and r < 0.5 and isinstance(info.get(field), list) and info[field]:
                s = list(info[field])
                i = rng.randrange(len(s))
                s[i] = rng.choice((s[i] + 1, s[i] - 1, 0, s[i] * 2, odd_value(rng)))
                if rng.random() < 0.2:
                    s.append(rng.choice((1, 2, 0)))
                info[field] = s
            elif field == "dtype" and r < 0.5:
                info[field] = rng.choice(("F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3", "f32", ""))
            else:
                info[field] = odd_value(rng) if rng.random() < 0.7 else [odd_value(rng), odd_value(rng)]
        elif op < 0.45 and isinstance(info, dict):
            info.pop(rng.choice(("dtype", "shape", "data_offsets")), None)
        elif op < 0.55:
            del h[name]
            names.remove(name)
            if not names:
                break
        elif op < 0.62:
            new = rng.choice((name.replace("transformer.", ""), name + "x", name.replace("h.0", "h.9"),
                              "lm_head.weight", "transformer.h.1.attn.bias", "__metadata__"))
            h[new] = h[name] if rng.random() < 0.5 else h.pop(name)
            names = [n for n in h if n != "__metadata__"]
            if not names:
                break
        elif op < 0.68:
            h[name] = odd_value(rng)
        elif op < 0.74:
            h["__metadata__"] = rng.choice(({"format": "pt"}, None, [], "x", {"a": [1, 2]}, 3))
        elif op < 0.78:
            h = rng.choice(([], "x", 3, None, [h], True))
            break
        else:  # swap two entries' offsets (sizes may differ)
            other = h.get(rng.choice(names))
            if isinstance(info, dict) and isinstance(other, dict):
                info["data_offsets"], other["data_offsets"] = other.get("data_offsets"), info.get("data_offsets")
    raw = json.dumps(h).encode("utf-8", "surrogatepass")
    if rng.random() < 0.1:
        raw += b" " * rng.randrange(8)  # safetensors pads its header with spaces
    return cp.safetensors(None, fx.st_data, raw_header=raw)


def _num(v):
    return isinstance(v, int) and not isinstance(v, bool)


def mutate_safetensors(rng, fx):
    r = rng.random()
    if r < 0.45:
        b = st_header_edit(rng, fx)
    elif r < 0.65:
        b = mutate_bytes(rng, fx.st, 8, 8 + fx.st_hlen)
    elif r < 0.72:
        b = bytearray(fx.st)
        v = rng.choice((0, 1, 2, fx.st_hlen - 1, fx.st_hlen + 1, len(fx.st) - 8, len(fx.st), 1 << 63,
                        (1 << 64) - 1, 100 << 20, rng.randrange(1 << 32)))
        b[0:8] = struct.pack("<Q", v)
        b = bytes(b)
    elif r < 0.77:
        depth = rng.choice((1000, 100000, 10 ** 6))
        raw = rng.choice((b"[" * depth, b'{"a":' * depth, b"[" * depth + b"]" * depth))
        b = cp.safetensors(None, b"", raw_header=raw)
    elif r < 0.87:
        b = truncate(rng, fx.st)
    elif r < 0.95:
        b = mutate_bytes(rng, fx.st, 8 + fx.st_hlen)  # the data: a valid output
    else:
        b = mutate_bytes(rng, fx.st, 0, 16)
    if rng.random() < 0.1:
        b = mutate_bytes(rng, b)
    return "model.safetensors", b


# ---- pytorch_model.bin ---------------------------------------------------------------------

STYPES = ("FloatStorage", "HalfStorage", "BFloat16Storage", "DoubleStorage", "IntStorage", "LongStorage")


def edit_entries(rng, entries, storages):
    entries = [list(e) for e in entries]
    storages = dict(storages)
    for _ in range(rng.choice((1, 1, 2, 3))):
        e = rng.choice(entries)
        op = rng.random()
        if op < 0.15:
            e[3] = rng.choice((e[3] + 1, e[3] - 1, 0, e[3] * 2, 750_000_000, 1 << 40, 1 << 62, -1, odd_value(rng)))
        elif op < 0.25:
            e[4] = rng.choice((1, -1, e[3], e[3] - 1, 1 << 62, odd_value(rng)))
        elif op < 0.45:
            f = rng.choice((5, 6))
            v = list(e[f])
            if v:
                i = rng.randrange(len(v))
                v[i] = rng.choice((0, 1, -1, v[i] + 1, v[i] * 2, 1 << 31, 1 << 62, rng.choice(INTS)))
            if rng.random() < 0.2:
                v = v[::-1]
            if rng.random() < 0.1:
                v.append(1)
            e[f] = v
        elif op < 0.55:
            e[2] = rng.choice(STYPES)
            if rng.random() < 0.5 and e[1] in storages and e[2] in ("HalfStorage", "BFloat16Storage"):
                storages[e[1]] = storages[e[1]][:len(storages[e[1]]) // 2]
        elif op < 0.62:
            e[1] = rng.choice((rng.choice(entries)[1], "999", "../x", "0" * 80))
        elif op < 0.70:
            e[0] = rng.choice((e[0].replace("transformer.", ""), e[0] + ".x", "lm_head.weight", rng.choice(entries)[0]))
        elif op < 0.77:
            entries.remove(e)
            if not entries:
                entries = [e]
        elif op < 0.82:
            entries.append(list(e))
        elif op < 0.90 and e[1] in storages:  # the storage's bytes shorter or longer
            s = storages[e[1]]
            storages[e[1]] = s[:rng.randrange(len(s) + 1)] if rng.random() < 0.6 else s + b"\0" * rng.choice((1, 4, 1024))
        elif e[1] in storages:
            del storages[e[1]]
    return [tuple(e) for e in entries], storages


def safe_pickle(rng, entries, legacy=False):
    try:
        return cp.torch_pickle(entries, legacy)
    except (TypeError, AttributeError, OverflowError, ValueError):
        # an odd value torch_pickle cannot write: put an int there instead
        fixed = []
        for e in entries:
            e = list(e)
            for i in (3, 4):
                if not _num(e[i]):
                    e[i] = rng.choice(INTS)
            for i in (5, 6):
                e[i] = [x if _num(x) else rng.choice(INTS) for x in (e[i] if isinstance(e[i], list) else [1])]
            fixed.append(tuple(e))
        return cp.torch_pickle(fixed, legacy)


# opcode snippets worth splicing into a pickle: stack and memo games, BUILD on what find_class
# returned, globals (allowed and not), persistent ids, big lengths, deep nesting
SNIPPETS = [b"0", b"2", b"1", b"b", b"R", b"}", b"]", b")", b"N", b"(", b"t", b"u", b"a", b"e", b"s", b"l",
            b"\x85", b"\x86", b"\x87", b"\x94", b"h\x00", b"h\x05", b"q\x07", b"r\xff\xff\xff\x7f",
            b"j\xff\xff\x00\x00", b"Q", b"P", b"\x88", b"\x89", b"K\x05", b"J\xff\xff\xff\xff",
            b"\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f", b"\x8b\x00\x00\x00\x01",
            b"ctorch\nFloatStorage\n", b"ctorch\nHalfStorage\n", b"ctorch._utils\n_rebuild_tensor_v2\n",
            b"ccollections\nOrderedDict\n", b"cbuiltins\ngetattr\n", b"c__builtin__\neval\n",
            b"\x8c\x05torch\x8c\x0cFloatStorage\x93", b"N}X\x04\x00\x00\x00sizeK\x01s\x86b",
            b"N}X\x05\x00\x00\x00dtypeX\x03\x00\x00\x00F99s\x86b", b"}X\x05\x00\x00\x00numelK\x00sb",
            b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu"
            b"\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x01tQ",
            b"B\xff\xff\xff\x7f", b"\x8e" + b"\xff" * 8, b"\x95" + b"\xff" * 8, b"(" * 1000, b"]" * 5000]


def pickle_edit(rng, pkl):
    """Structure-aware edits of a pickle: ints re-encoded with odd values, opcodes deleted or
    duplicated, snippets spliced in at opcode boundaries."""
    import pickletools
    ops = [(op, arg, pos) for op, arg, pos in pickletools.genops(pkl)]
    b = pkl
    for _ in range(rng.choice((1, 1, 2, 3))):
        op, arg, pos = ops[rng.randrange(len(ops))]
        nxt = next((p for o, a, p in ops if p > pos), len(pkl))
        r = rng.random()
        if r < 0.35 and op.name in ("BININT", "BININT1", "BININT2", "LONG1"):
            v = rng.choice(INTS + [arg + 1, arg - 1, -arg, arg * 2, 1 << 2000])
            b = b[:pos] + cp._int(v) + b[nxt:]
        elif r < 0.5:
            b = b[:pos] + b[nxt:]
        elif r < 0.6:
            b = b[:pos] + b[pos:nxt] * 2 + b[nxt:]
        else:
            b = b[:pos] + rng.choice(SNIPPETS) + b[pos:]
        if b is not pkl:
            break  # positions refer to the original: one structural edit, then maybe raw ones
    if rng.random() < 0.2:
        b = mutate_bytes(rng, b)
    return b


def cd_edit(rng, z):
    """Edit a field of a central-directory entry, a local header or the end record."""
    b = bytearray(z)
    kind = rng.random()
    if kind < 0.6:
        sig, fields = b"PK\x01\x02", {8: 2, 10: 2, 16: 4, 20: 4, 24: 4, 28: 2, 30: 2, 32: 2, 42: 4}
    elif kind < 0.85:
        sig, fields = b"PK\x03\x04", {6: 2, 8: 2, 14: 4, 18: 4, 22: 4, 26: 2, 28: 2}
    elif kind < 0.93:
        sig, fields = b"PK\x05\x06", {4: 2, 6: 2, 8: 2, 10: 2, 12: 4, 16: 4, 20: 2}
    elif kind < 0.97:  # zip64 end record (torch writes one)
        sig, fields = b"PK\x06\x06", {4: 8, 16: 4, 20: 4, 24: 8, 32: 8, 40: 8, 48: 8}
    else:  # zip64 locator
        sig, fields = b"PK\x06\x07", {4: 4, 8: 8, 16: 4}
    spots = []
    i = b.find(sig)
    while i >= 0 and len(spots) < 200:
        spots.append(i)
        i = b.find(sig, i + 4)
    if not spots:
        return bytes(b)
    at = rng.choice(spots)
    off, width = rng.choice(sorted(fields.items()))
    if at + off + width > len(b):
        return bytes(b)
    old = int.from_bytes(b[at + off:at + off + width], "little")
    top = (1 << (8 * width)) - 1
    new = rng.choice((0, 1, top, top - 1, old + 1, old - 1, old * 2, old + 4096, 8, 12, 14, 99,
                      rng.randrange(top + 1))) & top
    b[at + off:at + off + width] = new.to_bytes(width, "little")
    return bytes(b)


def bomb_zip(fx, mb, entries):
    """The fixture's archive with data/0 replaced by `mb` MB that deflate to almost nothing."""
    return cp.torch_zip(cp.torch_pickle(entries), dict(fx.storages, **{"0": cp.bomb_member(mb)}), fx.root)


def legacy_file(entries, storages, edit=None):
    """A pre-1.6 torch.save file; edit(pickle bytes) may change its state-dict pickle."""
    import pickle
    main = cp.torch_pickle(entries, legacy=True)
    out = [pickle.dumps(convert.LEGACY_MAGIC, 2), pickle.dumps(1001, 2),
           pickle.dumps({"little_endian": True, "type_sizes": {"int": 4}}, 2),
           edit(main) if edit else main]
    keys = []
    for e in entries:
        if e[1] not in keys:
            keys.append(e[1])
    out.append(pickle.dumps(keys, 2))
    for k in keys:
        data = storages.get(k, b"")
        out.append(struct.pack("<q", len(data) // 4) + data)
    return b"".join(out)


def mutate_pytorch(rng, fx):
    r = rng.random()
    if r < 0.30:
        entries, storages = edit_entries(rng, fx.entries, fx.storages)
        pkl = safe_pickle(rng, entries)
        comp = zipfile.ZIP_STORED if rng.random() < 0.8 else zipfile.ZIP_DEFLATED
        b = cp.torch_zip(pkl, storages, fx.root, comp)
    elif r < 0.38:
        pkl = mutate_bytes(rng, cp.torch_pickle(fx.entries))
        b = cp.torch_zip(pkl, fx.storages, fx.root)
    elif r < 0.50:
        b = cp.torch_zip(pickle_edit(rng, fx.pkl), fx.storages, fx.root)
    elif r < 0.65:
        b = fx.pt
        for _ in range(rng.choice((1, 1, 2))):
            b = cd_edit(rng, b)
    elif r < 0.70:
        b = mutate_bytes(rng, fx.pt, max(0, len(fx.pt) - 4096))  # the central directory, raw
    elif r < 0.75:
        b = truncate(rng, fx.pt)
    elif r < 0.80:
        mb = rng.choice((64, 200, 3000))
        entries = fx.entries
        if rng.random() < 0.5:
            entries = [tuple(e[:3]) + ((mb << 20) // 4,) + tuple(e[4:]) if e[1] == "0" else e for e in fx.entries]
        b = bomb_zip(fx, mb, entries)
    elif r < 0.95:
        entries, storages = fx.entries, fx.storages
        if rng.random() < 0.5:
            entries, storages = edit_entries(rng, entries, storages)
        if entries is fx.entries:
            b = legacy_file(entries, storages, (lambda p: pickle_edit(rng, p)) if rng.random() < 0.3 else None)
        else:
            b = _legacy_safe(rng, entries, storages)
        if rng.random() < 0.6:
            b = mutate_bytes(rng, b, 0, 4096) if rng.random() < 0.7 else truncate(rng, b)
    else:
        extra = [(rng.choice(("archive/data.pkl", fx.root + "/data.pkl", fx.root + "/data/0", "x")), b"\x80\x02N.")]
        b = cp.torch_zip(cp.torch_pickle(fx.entries), fx.storages, fx.root, extra=extra)
    return "pytorch_model.bin", b


def _legacy_safe(rng, entries, storages):
    try:
        return legacy_file(entries, storages)
    except (TypeError, AttributeError, OverflowError, ValueError, struct.error):
        return legacy_file(cp.fixture_entries()[0], storages)


# ---- config.json, vocab.json, merges.txt ---------------------------------------------------

CONFIG_KEYS = ("n_layer", "n_head", "n_embd", "n_ctx", "n_positions", "vocab_size", "n_inner",
               "layer_norm_epsilon", "eos_token_id", "bos_token_id", "model_type", "activation_function",
               "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "_name_or_path")


def mutate_config(rng, fx):
    r = rng.random()
    if r < 0.75:
        c = dict(fx.config)
        for _ in range(rng.choice((1, 1, 2, 3))):
            k = rng.choice(CONFIG_KEYS)
            op = rng.random()
            if op < 0.15:
                c.pop(k, None)
            elif op < 0.35 and _num(c.get(k)):
                c[k] = rng.choice((c[k] + 1, c[k] - 1, c[k] * 2, c[k] // 2, 0, -c[k], float(c[k])))
            else:
                c[k] = odd_value(rng)
        if rng.random() < 0.05:
            c = rng.choice(([c], "x", 1, None, []))
        b = json.dumps(c).encode("utf-8", "surrogatepass")
    elif r < 0.95:
        b = mutate_bytes(rng, fx.config_raw)
    else:
        b = rng.choice((b"", b"\xff\xfe{}", b"[" * 100000, b"{}", b"null", b"{\"n_layer\": 1e999}"))
    return "config.json", b


def mutate_tokenizer(rng, fx):
    if rng.random() < 0.5:
        merges = cp.fixture_bytes("merges.txt")
        if rng.random() < 0.5:
            return "merges.txt", mutate_bytes(rng, merges, 0, 4096)
        return "merges.txt", rng.choice((b"a b c\n", b"\xff\xfe\n", b"", b"#version: 0.2\n", b"a\n", b"a b\r\n"))
    vocab = json.loads(cp.fixture_bytes("vocab.json"))
    op = rng.random()
    if op < 0.3:
        k = rng.choice(list(vocab))
        vocab[k] = odd_value(rng)
    elif op < 0.5:
        del vocab[rng.choice(list(vocab))]
    elif op < 0.6:
        vocab["\ud800"] = 50257
    elif op < 0.7:
        vocab = rng.choice(([1, 2], "x", None, {}))
    else:
        return "vocab.json", mutate_bytes(rng, cp.fixture_bytes("vocab.json"), 0, 2048)
    return "vocab.json", json.dumps(vocab).encode("utf-8", "surrogatepass")


def make_case(rng, fx):
    r = rng.random()
    if r < 0.42:
        return mutate_safetensors(rng, fx)
    if r < 0.84:
        return mutate_pytorch(rng, fx)
    if r < 0.97:
        return mutate_config(rng, fx)
    return mutate_tokenizer(rng, fx)


# ---- running a case ------------------------------------------------------------------------

class Sink:
    def __init__(self):
        self.n = 0

    def write(self, b):
        self.n += len(b)


def check_header(head):
    """The engine's load-time checks on the GGUF header the converter made (src/gpt2.c)."""
    pos = [24]
    assert head[:4] == b"GGUF"
    _, n_t, n_kv = struct.unpack_from("<IQQ", head, 4)

    def take(fmt):
        v = struct.unpack_from("<" + fmt, head, pos[0])
        pos[0] += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        n = take("Q")
        s = head[pos[0]:pos[0] + n]
        pos[0] += n
        return s.decode("utf-8")  # every string is valid UTF-8

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        return take({4: "I", 5: "i", 6: "f", 7: "?"}[t])

    meta = {}
    for _ in range(n_kv):
        k = string()
        meta[k] = value(take("I"))
    limits = {"gpt2.context_length": 1 << 20, "gpt2.embedding_length": 1 << 16,
              "gpt2.feed_forward_length": 1 << 18, "gpt2.block_count": 1 << 10, "gpt2.attention.head_count": 1 << 10}
    for k, hi in limits.items():
        assert 1 <= meta[k] <= hi, (k, meta[k])
    assert meta["gpt2.embedding_length"] % meta["gpt2.attention.head_count"] == 0
    eps = meta["gpt2.attention.layer_norm_epsilon"]
    assert 0 < eps < 1, eps
    V = len(meta["tokenizer.ggml.tokens"])
    assert 256 <= V <= 1 << 24 and len(meta["tokenizer.ggml.token_type"]) == V
    assert meta["tokenizer.ggml.eos_token_id"] < V and meta["tokenizer.ggml.bos_token_id"] < V
    assert len(meta["tokenizer.ggml.merges"]) <= 1 << 24
    C, F, L = meta["gpt2.embedding_length"], meta["gpt2.feed_forward_length"], meta["gpt2.block_count"]
    P = meta["gpt2.context_length"]
    want = {"token_embd.weight": [C, V], "position_embd.weight": [C, P], "output.weight": [C, V],
            "output_norm.weight": [C], "output_norm.bias": [C]}
    per = {"attn_norm.weight": [C], "attn_norm.bias": [C], "attn_qkv.weight": [C, 3 * C], "attn_qkv.bias": [3 * C],
           "attn_output.weight": [C, C], "attn_output.bias": [C], "ffn_norm.weight": [C], "ffn_norm.bias": [C],
           "ffn_up.weight": [C, F], "ffn_up.bias": [F], "ffn_down.weight": [F, C], "ffn_down.bias": [C]}
    for i in range(L):
        for k, v in per.items():
            want["blk.%d.%s" % (i, k)] = v
    seen = set()
    for _ in range(n_t):
        name = string()
        nd = take("I")
        ne = [take("Q") for _ in range(nd)]
        take("I")
        take("Q")
        assert want.get(name) == ne, (name, ne, want.get(name))
        seen.add(name)
    assert len(seen) == n_t and set(want) - seen <= {"output.weight"}
    return meta


class Runner:
    def __init__(self, args):
        self.args = args
        self.fx = Fixture()
        self.work = tempfile.mkdtemp(prefix="fuzz_convert.")
        self.tok_cache = {}
        self.stats = {"executions": 0, "refused": 0, "converted": 0, "findings": 0}
        self.messages = {}

    def read_tok(self, src_dir, cfg):
        """convert.read_tokenizer, cached for the fixture's own vocab.json and merges.txt."""
        if os.path.islink(os.path.join(src_dir, "vocab.json")) and os.path.islink(os.path.join(src_dir, "merges.txt")):
            key = (cfg.n_vocab, cfg.eos, cfg.bos)
            if key not in self.tok_cache:
                try:
                    vocab, merges = convert.read_tokenizer(src_dir, cfg)
                    self.tok_cache[key] = (vocab, merges, cfg.eos, cfg.bos)
                except convert.ConvertError as e:
                    self.tok_cache[key] = e
            got = self.tok_cache[key]
            if isinstance(got, convert.ConvertError):
                raise convert.ConvertError(str(got))
            vocab, merges, cfg.eos, cfg.bos = got
            return vocab, merges
        return convert.read_tokenizer(src_dir, cfg)

    def setup_dir(self, fname, data, weights):
        d = os.path.join(self.work, "src")
        if os.path.isdir(d):
            for f in os.listdir(d):
                os.unlink(os.path.join(d, f))
        else:
            os.mkdir(d)
        with open(os.path.join(d, fname), "wb") as f:
            f.write(data)
        for f in cp.FILES + (weights,):
            if f != fname and not (f in WEIGHT_FILES and fname in WEIGHT_FILES):
                os.symlink(os.path.join(cp.MODEL, f), os.path.join(d, f))
        return d

    def run_one(self, fname, data, weights, out_type, timeout):
        """None when the case obeys the rule, else a description of the finding."""
        d = self.setup_dir(fname, data, weights)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            _, head, parts = convert.prepare(d, out_type, read_tok=self.read_tok)
            sink = Sink()
            n = convert.write_payloads(sink, head, parts)
            signal.setitimer(signal.ITIMER_REAL, 0)
            if n != sink.n:
                return "wrote %d bytes, planned %d" % (sink.n, n)
            try:
                check_header(head)
            except Exception as e:  # noqa: BLE001 - any failure here is the finding
                return "wrote a model the engine would refuse: %r" % (e,)
            self.stats["converted"] += 1
            return None
        except convert.ConvertError as e:
            signal.setitimer(signal.ITIMER_REAL, 0)
            msg = str(e)
            if not msg or "\n" in msg or "\r" in msg:
                return "ConvertError without a one-line message: %r" % msg[:300]
            if "MemoryError" in msg or "RecursionError" in msg:
                return "ConvertError hides a %s" % ("MemoryError" if "MemoryError" in msg else "RecursionError")
            self.stats["refused"] += 1
            key = msg.split(":")[-1].strip()[:60] if "data_offsets" not in msg else "data_offsets"
            self.messages[key] = self.messages.get(key, 0) + 1
            return None
        except CaseTimeout:
            return "took longer than %g s" % timeout
        except BaseException as e:  # noqa: BLE001
            signal.setitimer(signal.ITIMER_REAL, 0)
            if isinstance(e, KeyboardInterrupt):
                raise
            return "%s: %s\n%s" % (type(e).__name__, str(e)[:300], traceback.format_exc(limit=12))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def case(self, i):
        rng = random.Random("%d:%d" % (self.args.seed, i))
        fname, data = make_case(rng, self.fx)
        weights = fname if fname in WEIGHT_FILES else rng.choice(WEIGHT_FILES)
        out_type = "f16" if rng.random() < 0.05 else "f32"
        return fname, data, weights, out_type

    def save(self, i, fname, data, why):
        os.makedirs(self.args.artifacts, exist_ok=True)
        path = os.path.join(self.args.artifacts, "convert-%d-%d.%s" % (self.args.seed, i, fname))
        with open(path, "wb") as f:
            f.write(data)
        with open(path + ".txt", "w") as f:
            f.write(why + "\n")
        return path


def main(argv=None):
    ap = argparse.ArgumentParser(description="Fuzz scripts/convert.py's readers with mutated fixtures.")
    ap.add_argument("-t", "--seconds", type=float, default=60, help="run this long (default 60)")
    ap.add_argument("-n", "--cases", type=int, default=0, help="stop after this many cases (0: no limit)")
    ap.add_argument("--seed", type=int, default=None, help="default: from the clock (printed)")
    ap.add_argument("--start", type=int, default=0, help="first case number")
    ap.add_argument("--mem-mb", type=int, default=1024, help="address-space limit (RLIMIT_AS)")
    ap.add_argument("--rss-mb", type=int, default=768, help="a case that takes the peak RSS past this is a finding")
    ap.add_argument("--case-timeout", type=float, default=20, help="seconds one case may take")
    ap.add_argument("--artifacts", default=os.path.join(ROOT, "build", "fuzz", "artifacts"))
    ap.add_argument("--case", type=int, default=None, help="run case N of --seed alone (a finding's number)")
    ap.add_argument("--replay", nargs="*", default=None,
                    help="run saved inputs (convert-S-N.<file name>) instead of fuzzing")
    args = ap.parse_args(argv)
    if args.seed is None:
        if args.case is not None:
            ap.error("--case needs --seed")
        args.seed = int(time.time()) % 100000
    limit = args.mem_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    signal.signal(signal.SIGALRM, _alarm)
    run = Runner(args)
    sys.setrecursionlimit(10000)

    if args.case is not None:  # one case again, exactly as the run made it
        fname, data, weights, out_type = run.case(args.case)
        why = run.run_one(fname, data, weights, out_type, args.case_timeout)
        print("seed %d case %d (%s, %s, %s): %s" % (args.seed, args.case, fname, weights, out_type, why or "ok"))
        return 1 if why else 0

    if args.replay is not None:
        bad = 0
        for path in args.replay:
            fname = next((f for f in cp.FILES + WEIGHT_FILES if path.endswith("." + f) or os.path.basename(path) == f), None)
            if fname is None:
                print("%s: the name does not end in a checkpoint file name" % path)
                bad += 1
                continue
            with open(path, "rb") as f:
                data = f.read()
            weights = fname if fname in WEIGHT_FILES else "model.safetensors"
            why = run.run_one(fname, data, weights, "f32", args.case_timeout)
            print("%s: %s" % (path, why or "ok"))
            bad += why is not None
        return 1 if bad else 0

    print("fuzz_convert: seed %d, %g s, RLIMIT_AS %d MB, %g s a case" % (args.seed, args.seconds, args.mem_mb,
                                                                          args.case_timeout), flush=True)
    t0 = time.time()
    last = t0
    i = args.start
    try:
        while time.time() - t0 < args.seconds and (not args.cases or i - args.start < args.cases):
            fname, data, weights, out_type = run.case(i)
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
            why = run.run_one(fname, data, weights, out_type, args.case_timeout)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
            if not why and rss > args.rss_mb and rss > rss0:
                why = "peak RSS grew from %d to %d MB in this case (limit for a finding: %d MB)" % (rss0, rss, args.rss_mb)
            run.stats["executions"] += 1
            if why:
                run.stats["findings"] += 1
                path = run.save(i, fname, data, why)
                print("FINDING case %d (%s, %s): %s\n  saved: %s" % (i, fname, weights, why.splitlines()[0], path),
                      flush=True)
                print("\n".join("  " + ln for ln in why.splitlines()[1:]), flush=True)
            i += 1
            now = time.time()
            if now - last >= 60:
                last = now
                print("#%d %.0f s %.2f cases/s refused %d converted %d findings %d peak-rss %d MB"
                      % (run.stats["executions"], now - t0, run.stats["executions"] / (now - t0),
                         run.stats["refused"], run.stats["converted"], run.stats["findings"],
                         resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10), flush=True)
    finally:
        import shutil
        shutil.rmtree(run.work, ignore_errors=True)
    dt = time.time() - t0
    s = run.stats
    print("fuzz_convert: seed %d, cases %d..%d: %d executions in %.0f s (%.2f/s), %d refused, %d converted, "
          "%d findings, %d distinct errors, peak RSS %d MB"
          % (args.seed, args.start, i - 1, s["executions"], dt, s["executions"] / max(dt, 1e-9), s["refused"],
             s["converted"], s["findings"], len(run.messages),
             resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10), flush=True)
    if os.environ.get("FUZZ_CONVERT_VERBOSE"):
        for k, v in sorted(run.messages.items(), key=lambda kv: -kv[1]):
            print("  %6d  %s" % (v, k))
    return 1 if s["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
