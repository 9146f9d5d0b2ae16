#!/usr/bin/env python3
"""Convert a Hugging Face GPT-2 checkpoint into one GGUF file for gpt2c (and llama.cpp).

usage: python3 scripts/convert.py SRC -o OUT.gguf [--type f32|f16]

SRC is either a local directory in Hugging Face layout (config.json, model.safetensors or
pytorch_model.bin, vocab.json, merges.txt) or a Hugging Face model id (gpt2, gpt2-medium,
gpt2-large, gpt2-xl, openai-community/gpt2, ...). A model id is downloaded with a progress
bar into a cache directory ($GPT2C_CACHE, else $XDG_CACHE_HOME/gpt2c, else ~/.cache/gpt2c);
an interrupted download resumes where it stopped. $HF_ENDPOINT overrides the server
(default https://huggingface.co).

Only the Python 3.8+ standard library is used: no numpy, no torch. pytorch_model.bin is read
with a restricted unpickler that rebuilds tensors and refuses everything else, so a
malicious checkpoint cannot run code.

The output follows llama.cpp's layout for its "gpt2" architecture: keys gpt2.*, tokenizer.ggml.*,
tensors token_embd, position_embd, blk.N.{attn_norm, attn_qkv, attn_output, ffn_norm,
ffn_up, ffn_down}, output_norm. Hugging Face's Conv1D weights ([in, out]) are transposed to
the [out][in] row-major matrices that GGUF stores (ne = [in, out]). --type applies to the
2-D matrices; 1-D tensors (biases, layernorm) stay F32.
"""
import argparse
import array
import io
import json
import math
import mmap
import os
import pickle
import pickletools
import re
import secrets
import stat
import struct
import sys
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections import OrderedDict

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGNMENT = 32

# GGUF metadata value types
T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9
# ggml tensor types
GGML_F32, GGML_F16 = 0, 1
# llama.cpp's general.file_type: 0 = all F32, 1 = mostly F16
FILE_TYPE = {"f32": 0, "f16": 1}
# llama.cpp's token types
TOKEN_NORMAL, TOKEN_CONTROL = 1, 3

DEFAULT_ENDPOINT = "https://huggingface.co"


class ConvertError(Exception):
    """An error to report in one line, without a traceback."""


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


# ----------------------------------------------------------------------------------------
# A tensor: raw little-endian bytes + dtype + shape (row-major, contiguous)
# ----------------------------------------------------------------------------------------

class Tensor:
    """dtype + shape + bytes. The bytes may come later: `load` makes them on first use, so a
    checkpoint's shapes are checked against the config before any tensor is copied."""
    __slots__ = ("dtype", "shape", "_data", "_load")

    def __init__(self, dtype, shape, data=None, load=None):
        self.dtype = dtype    # "F32" | "F16" | "BF16" | "F64"
        self.shape = list(shape)
        self._data = data     # bytes-like, exactly numel * itemsize bytes
        self._load = load

    @property
    def data(self):
        if self._data is None:
            self._data = self._load()
            self._load = None
        return self._data

    def numel(self):
        n = 1
        for s in self.shape:
            n *= s
        return n

    def floats(self):
        """The values as array('f') (float32), whatever the source dtype."""
        a = array.array("f")
        if self.dtype == "F32":
            a.frombytes(self.data)
        elif self.dtype == "F16":
            mv = memoryview(self.data)
            step = 2 << 20  # a million numbers at a time: Python floats cost 24 bytes each
            for i in range(0, len(mv), step):
                part = mv[i:i + step]
                a.extend(struct.unpack("<%de" % (len(part) // 2), part))
            return a  # unpack already produced native floats
        elif self.dtype == "BF16":
            h = array.array("H")
            h.frombytes(self.data)
            if sys.byteorder == "big":
                h.byteswap()
            # a bfloat16 is the top half of a float32: put it there, a million at a time
            step = 1 << 20
            for i in range(0, len(h), step):
                part = h[i:i + step]
                a.frombytes(struct.pack("=%dI" % len(part), *[x << 16 for x in part]))
            return a
        elif self.dtype == "F64":
            d = array.array("d")
            d.frombytes(self.data)
            if sys.byteorder == "big":
                d.byteswap()
            return array.array("f", d)
        else:
            raise ConvertError("unsupported tensor dtype %s" % self.dtype)
        if sys.byteorder == "big":
            a.byteswap()
        return a


ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}
MAX_DIMS = 8


def _is_int(v):
    return type(v) is int  # not bool, not float


def _short(v, n=40):
    """A bounded description of an untrusted value for an error message."""
    if isinstance(v, (str, int, float, bool)) or v is None:
        r = json.dumps(v) if not isinstance(v, int) or abs(v) < 10 ** 30 else "a %d-bit number" % v.bit_length()
        return r if len(r) <= n else r[:n] + "..."
    return "a JSON " + {dict: "object", list: "array"}.get(type(v), type(v).__name__)


def _why(e, n=200):
    """An exception's text on one bounded line (the messages of json, pickle and zipfile
    can quote the hostile input)."""
    t = str(e) or type(e).__name__
    t = "".join(c if c.isprintable() else repr(c)[1:-1] for c in t[:n])
    return t + ("..." if len(str(e)) > n else "")


# ----------------------------------------------------------------------------------------
# config.json, vocab.json, merges.txt: checked against what the engine accepts
# ----------------------------------------------------------------------------------------

# the engine's own limits (src/gpt2.c, load_config): a file outside them is refused at load
LIMITS = {"n_layer": 1 << 10, "n_head": 1 << 10, "n_embd": 1 << 16, "n_ctx": 1 << 20,
          "n_inner": 1 << 18, "vocab_size": 1 << 24}
MIN_VOCAB = 256  # one token per byte at least
MAX_MERGES = 1 << 24
MAX_JSON_BYTES = 32 << 20  # GPT-2's vocab.json is 1 MB, its merges.txt 0.5 MB
MAX_CONFIG_BYTES = 1 << 20
MAX_INDEX = 1 << 63       # sizes, strides and offsets are int64 in torch and safetensors


class Config:
    __slots__ = ("n_layer", "n_head", "n_embd", "n_ctx", "n_ff", "n_vocab", "eps", "eos", "bos", "name")

    def expected_shapes(self):
        """Hugging Face shapes of every weight ([in, out] for Conv1D), GGUF short names."""
        C, F, V, P = self.n_embd, self.n_ff, self.n_vocab, self.n_ctx
        return {
            "token_embd.weight": [V, C], "position_embd.weight": [P, C], "output.weight": [V, C],
            "attn_norm.weight": [C], "attn_norm.bias": [C],
            "attn_qkv.weight": [C, 3 * C], "attn_qkv.bias": [3 * C],
            "attn_output.weight": [C, C], "attn_output.bias": [C],
            "ffn_norm.weight": [C], "ffn_norm.bias": [C],
            "ffn_up.weight": [C, F], "ffn_up.bias": [F],
            "ffn_down.weight": [F, C], "ffn_down.bias": [C],
            "output_norm.weight": [C], "output_norm.bias": [C],
        }

    def max_checkpoint_bytes(self):
        """The most bytes a checkpoint of this config can hold: every weight (an untied output
        matrix too) and the old causal-mask buffers, at 8 bytes a number, plus slack."""
        C, F, V, P, L = self.n_embd, self.n_ff, self.n_vocab, self.n_ctx, self.n_layer
        numel = 2 * V * C + P * C + 2 * C + L * (4 * C + 3 * C * C + 3 * C + C * C + C + 2 * C * F + F + C)
        numel += L * (P * P + 1)
        return 8 * numel + (1 << 20)


def open_regular(path):
    """path opened for reading if it is a regular file: a FIFO or a device in the checkpoint
    directory is refused, not read (opening a FIFO would wait for a writer forever)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConvertError("%s is not a regular file" % path)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def load_json_file(path, what, limit=MAX_JSON_BYTES):
    try:
        with open_regular(path) as f:
            raw = f.read(limit + 1)
    except OSError as e:
        raise ConvertError("cannot read %s: %s" % (path, e.strerror or _why(e)))
    if len(raw) > limit:
        raise ConvertError("%s is larger than %d KB: not a %s" % (path, limit >> 10, what))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConvertError("%s is not UTF-8 (byte %d)" % (path, e.start))
    try:
        return json.loads(text)
    except RecursionError:
        raise ConvertError("%s is not valid JSON: nested too deeply" % path)
    except ValueError as e:
        raise ConvertError("%s is not valid JSON: %s" % (path, _why(e)))


def parse_config(cfg, where="config.json"):
    """A Config from the parsed config.json, or a ConvertError naming the first bad setting."""
    if not isinstance(cfg, dict):
        raise ConvertError("%s is %s, not a JSON object" % (where, _short(cfg)))
    mt = cfg.get("model_type", "gpt2")
    if mt != "gpt2":
        raise ConvertError("%s: model_type is %s, not gpt2" % (where, _short(mt)))
    act = cfg.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ConvertError("%s: activation %s is not supported (GPT-2 uses gelu_new)" % (where, _short(act)))
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if cfg.get(flag):
            raise ConvertError("%s: %s is not supported" % (where, flag))

    def integer(key, lo, hi, value):
        if value is None:
            raise ConvertError("%s lacks a GPT-2 setting: %s" % (where, key))
        if not _is_int(value):
            raise ConvertError("%s: %s is %s, not an integer" % (where, key, _short(value)))
        if not lo <= value <= hi:
            raise ConvertError("%s: %s = %s is out of range (%d to %d)" % (where, key, _short(value), lo, hi))
        return value

    c = Config()
    c.n_layer = integer("n_layer", 1, LIMITS["n_layer"], cfg.get("n_layer"))
    c.n_head = integer("n_head", 1, LIMITS["n_head"], cfg.get("n_head"))
    c.n_embd = integer("n_embd", 1, LIMITS["n_embd"], cfg.get("n_embd"))
    if c.n_embd % c.n_head:
        raise ConvertError("%s: n_embd %d is not divisible by n_head %d" % (where, c.n_embd, c.n_head))
    key = "n_positions" if cfg.get("n_positions") is not None else "n_ctx"
    c.n_ctx = integer(key, 1, LIMITS["n_ctx"], cfg.get(key))
    c.n_vocab = integer("vocab_size", MIN_VOCAB, LIMITS["vocab_size"], cfg.get("vocab_size"))
    inner = cfg.get("n_inner")
    c.n_ff = 4 * c.n_embd if inner is None else integer("n_inner", 1, LIMITS["n_inner"], inner)
    if c.n_ff > LIMITS["n_inner"]:
        raise ConvertError("%s: the feed-forward width 4 * n_embd = %d is out of range (at most %d)"
                           % (where, c.n_ff, LIMITS["n_inner"]))
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not math.isfinite(eps) \
            or not 0 < eps < 1 or struct.unpack("<f", struct.pack("<f", eps))[0] <= 0:
        raise ConvertError("%s: layer_norm_epsilon %s is not a small positive number" % (where, _short(eps)))
    c.eps = float(eps)
    for key in ("eos_token_id", "bos_token_id"):
        v = cfg.get(key)
        if v is not None:
            integer(key, 0, c.n_vocab - 1, v)
    c.eos, c.bos = cfg.get("eos_token_id"), cfg.get("bos_token_id")
    name = cfg.get("_name_or_path")
    c.name = name if isinstance(name, str) and name else None
    return c


def bytes_to_unicode():
    """GPT-2's byte alphabet: the printable character that stands for each byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def _encodable(s):
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:  # a lone surrogate, which JSON's \ud800 escapes can make
        return False


def read_tokenizer(src_dir, cfg):
    """(vocab {token: id}, merges [str]) checked against cfg. The padded token list is made
    later, once the checkpoint's shapes agree with cfg."""
    vocab_path = os.path.join(src_dir, "vocab.json")
    vocab = load_json_file(vocab_path, "vocabulary")
    if not isinstance(vocab, dict):
        raise ConvertError("vocab.json is %s, not a JSON object of token: id" % _short(vocab))
    if len(vocab) > cfg.n_vocab:
        raise ConvertError("vocab.json has %d tokens but config.json says vocab_size %d"
                           % (len(vocab), cfg.n_vocab))
    seen = set()
    for s, i in vocab.items():
        if not _is_int(i) or not 0 <= i < cfg.n_vocab or i in seen:
            raise ConvertError("vocab.json: bad or duplicate id %s for %s" % (_short(i), _short(s)))
        if not _encodable(s):
            raise ConvertError("vocab.json: the token with id %d is not valid Unicode" % i)
        seen.add(i)
    for b, ch in bytes_to_unicode().items():
        if ch not in vocab:
            raise ConvertError("vocab.json has no token for byte 0x%02x (%s)" % (b, ch))
    if cfg.eos is None:
        cfg.eos = vocab.get("<|endoftext|>", cfg.n_vocab - 1)
    if cfg.bos is None:
        cfg.bos = cfg.eos

    merges_path = os.path.join(src_dir, "merges.txt")
    try:
        with open_regular(merges_path) as f:
            raw = f.read(MAX_JSON_BYTES + 1)
    except OSError as e:
        raise ConvertError("cannot read %s: %s" % (merges_path, e.strerror or _why(e)))
    if len(raw) > MAX_JSON_BYTES:
        raise ConvertError("%s is larger than %d KB" % (merges_path, MAX_JSON_BYTES >> 10))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConvertError("merges.txt is not UTF-8 (byte %d)" % e.start)
    merges = []
    for n, ln in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        if not ln or ln.startswith("#version"):
            continue
        if len(ln.split(" ")) != 2:
            raise ConvertError("merges.txt: line %d is not two tokens separated by a space: %s" % (n, _short(ln)))
        merges.append(ln)
    if len(merges) > MAX_MERGES:
        raise ConvertError("merges.txt has %d merges, more than %d" % (len(merges), MAX_MERGES))
    return vocab, merges


def token_list(vocab, n_vocab):
    """The n_vocab token strings in id order (gaps become control tokens [PADn]) and their types."""
    tokens = [None] * n_vocab
    for s, i in vocab.items():
        tokens[i] = s
    types = []
    for i, s in enumerate(tokens):
        if s is None:
            tokens[i] = "[PAD%d]" % i
            types.append(TOKEN_CONTROL)
        else:
            types.append(TOKEN_CONTROL if s == "<|endoftext|>" else TOKEN_NORMAL)
    return tokens, types


# ----------------------------------------------------------------------------------------
# Reading model.safetensors
# ----------------------------------------------------------------------------------------

SAFETENSORS_DTYPES = {"F32": "F32", "F16": "F16", "BF16": "BF16", "F64": "F64"}
MAX_SAFETENSORS_HEADER = 16 << 20  # GPT-2 XL's header is under 100 KB


def _check_shape(shape, where):
    if not isinstance(shape, (list, tuple)) or len(shape) > MAX_DIMS:
        raise ConvertError("%s: shape is %s, not a list of at most %d sizes" % (where, _short(shape), MAX_DIMS))
    for s in shape:
        if not _is_int(s) or not 0 <= s < MAX_INDEX:
            raise ConvertError("%s: shape has a bad size %s" % (where, _short(s)))
    return list(shape)


def read_safetensors(path):
    """{name: Tensor} of a .safetensors file (memory-mapped; tensors are zero-copy views).
    Every header field is checked: dtype, shape, offsets inside the file, a size that matches
    shape x dtype, and no two tensors sharing bytes."""
    try:
        with open_regular(path) as f:  # the map keeps its own handle on the file
            size = os.fstat(f.fileno()).st_size
            if size < 8:
                raise ConvertError("%s: too small to be a safetensors file" % path)
            (hlen,) = struct.unpack("<Q", f.read(8))
            if hlen > size - 8:
                raise ConvertError("%s: header length %d exceeds the file (%d bytes)" % (path, hlen, size))
            if hlen > MAX_SAFETENSORS_HEADER:
                raise ConvertError("%s: header length %d is larger than a GPT-2 header can be" % (path, hlen))
            raw = f.read(hlen)
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as e:
        raise ConvertError("cannot read %s: %s" % (path, e.strerror or _why(e)))
    if len(raw) != hlen:
        raise ConvertError("%s: truncated header" % path)
    try:
        header = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ConvertError("%s: header is not valid JSON (nested too deeply)" % path)
    except (UnicodeDecodeError, ValueError) as e:
        raise ConvertError("%s: header is not valid JSON (%s)" % (path, _why(e)))
    if not isinstance(header, dict):
        raise ConvertError("%s: header is %s, not a JSON object" % (path, _short(header)))
    base = 8 + hlen
    view = memoryview(buf)
    out = OrderedDict()
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        where = "%s: tensor %s" % (path, _short(name, 80))
        if not isinstance(info, dict):
            raise ConvertError("%s is described by %s, not an object" % (where, _short(info)))
        dt = info.get("dtype")
        dtype = SAFETENSORS_DTYPES.get(dt) if isinstance(dt, str) else None
        if dtype is None:
            raise ConvertError("%s has unsupported dtype %s" % (where, _short(dt)))
        shape = _check_shape(info.get("shape"), where)
        offs = info.get("data_offsets")
        if not isinstance(offs, list) or len(offs) != 2 or not all(_is_int(x) for x in offs):
            raise ConvertError("%s: data_offsets is %s, not [begin, end]" % (where, _short(offs)))
        begin, end = offs
        if not 0 <= begin <= end <= size - base:
            raise ConvertError("%s: data_offsets [%s, %s] lie outside the %d data bytes"
                               % (where, _short(begin), _short(end), size - base))
        t = Tensor(dtype, shape)
        if end - begin != t.numel() * ITEMSIZE[dtype]:
            raise ConvertError("%s: %d bytes do not hold shape %s of %s" % (where, end - begin, shape, dtype))
        t._data = view[base + begin:base + end]
        if end > begin:
            spans.append((begin, end, name))
        out[name] = t
    spans.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise ConvertError("%s: tensors %s and %s overlap" % (path, _short(n0, 80), _short(n1, 80)))
    return out


# ----------------------------------------------------------------------------------------
# Reading pytorch_model.bin without executing pickle code
# ----------------------------------------------------------------------------------------
#
# torch.save writes a zip archive: <root>/data.pkl is a pickle of the state dict in which each
# tensor is a call torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...) and
# each storage is a "persistent id" ('storage', StorageType, key, location, numel) whose bytes
# are the archive member <root>/data/<key>. Older files (torch < 1.6) are a sequence of
# pickles followed by the raw storages. We let pickle rebuild only those calls, mapped to our
# own functions; any other global in the pickle is refused.
#
# Nothing a checkpoint claims is allocated before it is checked: every pickle is first walked
# by pickletools (which runs nothing and reads each opcode's argument only as far as the data
# goes), so a length field cannot ask for gigabytes; the storages together may not exceed what
# the config's model needs (Config.max_checkpoint_bytes), and a zip member is read only up to
# the size its storage needs, so a small archive that inflates to gigabytes is refused.

STORAGE_DTYPES = {
    "FloatStorage": "F32", "HalfStorage": "F16", "BFloat16Storage": "BF16", "DoubleStorage": "F64",
}
MAX_PICKLE = 16 << 20   # GPT-2 XL's data.pkl is about 60 KB
MAX_MEMO = 1 << 20      # memo indices: the unpickler sizes its memo by the largest one


class _StorageType:
    def __init__(self, dtype):
        self.dtype = dtype


class _StorageRef:
    """A storage named by the pickle; its bytes are filled in by the reader."""

    def __init__(self, dtype, key, numel):
        self.dtype, self.key, self.numel = dtype, key, numel
        self.data = None


class _TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
    return data


class _SafeUnpickler(pickle.Unpickler):
    ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("collections", "OrderedDict"): OrderedDict,
    }

    def __init__(self, f, legacy=False):
        super().__init__(f)
        self.legacy = legacy
        self.storages = {}   # key -> (dtype, numel, _StorageRef): what persistent_load checked
        self.refs = {}       # id(_StorageRef) -> key

    def find_class(self, module, name):
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        fn = self.ALLOWED.get((module, name))
        if fn is None:
            raise ConvertError("pytorch checkpoint refers to %s.%s, which a weights file does not "
                               "need: refusing to load it" % (_short(module), _short(name)))

        def call(*args):  # a fresh object each time: BUILD on it cannot reach the module's own
            return fn(*args)
        return call

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or not isinstance(pid[0], str) or pid[0] != "storage":
            raise ConvertError("pytorch checkpoint has an unknown persistent id")
        stype, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(stype, _StorageType) or stype.dtype not in ITEMSIZE:
            raise ConvertError("pytorch checkpoint has a storage of unsupported type")
        if not (_is_int(key) or isinstance(key, str)) or len(str(key)) > 64:
            raise ConvertError("pytorch checkpoint has a storage with a bad key")
        if not _is_int(numel) or not 0 <= numel < MAX_INDEX:
            raise ConvertError("pytorch checkpoint: storage %s has a bad size %s" % (key, _short(numel)))
        if self.legacy and len(pid) > 5 and pid[5] is not None:
            raise ConvertError("pytorch checkpoint uses storage views (not supported)")
        key = str(key)
        have = self.storages.get(key)
        if have is None:
            ref = _StorageRef(stype.dtype, key, numel)
            self.storages[key] = (stype.dtype, numel, ref)
            self.refs[id(ref)] = key
            return ref
        if have[0] != stype.dtype or have[1] != numel:
            raise ConvertError("pytorch checkpoint: storage %s is declared twice, differently" % key)
        return have[2]


class _Bounded:
    """A read-only view of a file that never reads past `left` bytes (pickletools' reads of a
    length field then get what is there, not an allocation of the claimed length)."""

    def __init__(self, f, left):
        self.f, self.left = f, left

    def read(self, n=-1):
        if n is None or n < 0 or n > self.left:
            n = self.left
        b = self.f.read(n)
        self.left -= len(b)
        return b

    def readline(self, n=-1):
        b = self.f.readline(self.left if n is None or n < 0 or n > self.left else n)
        self.left -= len(b)
        return b

    def tell(self):
        return self.f.tell()


def _scan_pickle(f, limit, what):
    """Walk one pickle from f's position without running it; returns its length in bytes.
    Refuses truncated data, bad opcodes and memo indices large enough to cost memory."""
    start = f.tell()
    try:
        for op, arg, pos in pickletools.genops(_Bounded(f, limit)):
            if op.name.endswith(("PUT", "GET")) and _is_int(arg) and not 0 <= arg < MAX_MEMO:
                raise ConvertError("%s: pickle memo index %d is out of range" % (what, arg))
    except ConvertError:
        raise
    except (ValueError, TypeError, EOFError, OverflowError, UnicodeDecodeError, struct.error,
            RecursionError) as e:
        raise ConvertError("%s: malformed pickle (%s)" % (what, _why(e)))
    n = f.tell() - start
    if n > limit:  # pickletools read exactly up to STOP
        raise ConvertError("%s: pickle larger than %d MB" % (what, limit >> 20))
    return n


def _unpickle(data, what, legacy=False):
    """Run the restricted unpickler on bytes that _scan_pickle has walked."""
    up = _SafeUnpickler(io.BytesIO(data), legacy)
    try:
        obj = up.load()
    except ConvertError:
        raise
    except Exception as e:  # anything the pickle machinery raises on hostile data
        raise ConvertError("%s: cannot read the pickle (%s: %s)" % (what, type(e).__name__, _why(e)))
    return obj, up


def _load_pickle_bytes(data, what, legacy=False):
    if len(data) > MAX_PICKLE:
        raise ConvertError("%s: pickle larger than %d MB" % (what, MAX_PICKLE >> 20))
    bio = io.BytesIO(data)
    n = _scan_pickle(bio, len(data), what)
    return _unpickle(data[:n], what, legacy)


def _tensor_refs(obj, up, path):
    """[(name, _TensorRef, storage key)] of a loaded state dict, every field checked (the
    pickle can reach these objects' attributes, so they are checked here, after loading)."""
    if not isinstance(obj, dict):
        raise ConvertError("%s: the checkpoint is not a state dict" % path)
    out = []
    for name, ref in obj.items():
        if not isinstance(ref, _TensorRef):
            continue
        if not isinstance(name, str):
            raise ConvertError("%s: a tensor is named by %s, not a string" % (path, _short(name)))
        where = "pytorch checkpoint: tensor %s" % _short(name, 80)
        key = up.refs.get(id(ref.storage))
        if key is None or up.storages[key][2] is not ref.storage:
            raise ConvertError("%s has no storage" % where)
        size, stride, offset = ref.size, ref.stride, ref.offset
        if isinstance(size, list):
            size = ref.size = tuple(size)
        if isinstance(stride, list):
            stride = ref.stride = tuple(stride)
        if not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride) \
                or len(size) > MAX_DIMS or not all(_is_int(x) and 0 <= x < MAX_INDEX for x in size + stride) \
                or not _is_int(offset) or not 0 <= offset < MAX_INDEX:
            raise ConvertError("%s has a bad size, stride or offset" % where)
        out.append((name, ref, key))
    return out


def _lazy_tensors(refs, up, path):
    """{name: Tensor} whose bytes are gathered from the storages on first use. Every tensor
    is checked here, before anything is read: inside its storage, no more numbers than the
    storage holds, and a layout we can gather (contiguous, or a 2-D transpose)."""
    out = OrderedDict()
    for name, ref, key in refs:
        dtype, st_numel, st = up.storages[key]
        size, stride = ref.size, ref.stride
        numel = 1
        for s in size:
            numel *= s
        where = "pytorch checkpoint: tensor %s" % _short(name, 80)
        layout = "contiguous"
        if numel:
            last = ref.offset + sum((s - 1) * d for s, d in zip(size, stride))
            if last >= st_numel or numel > st_numel:
                raise ConvertError("%s lies outside its storage" % where)
            contiguous, acc = [], 1
            for s in reversed(size):
                contiguous.append(acc)
                acc *= s
            contiguous.reverse()
            if not all(d == c for s, d, c in zip(size, stride, contiguous) if s != 1):
                if len(size) == 2 and stride[0] == 1 and stride[1] >= size[0]:
                    layout = "transposed"
                else:
                    raise ConvertError("%s has an unsupported memory layout" % where)
        out[name] = Tensor(dtype, size, load=lambda ref=ref, st=st, dtype=dtype, numel=numel, layout=layout:
                           _materialize(ref, st, dtype, numel, layout))
    return out


def _materialize(ref, st, dtype, numel, layout):
    """The contiguous bytes of a tensor _lazy_tensors checked (offsets, 2-D transposes)."""
    isz = ITEMSIZE[dtype]
    if numel == 0:
        return b""
    mv = memoryview(st.data)
    if layout == "contiguous":
        return mv[ref.offset * isz:(ref.offset + numel) * isz]
    # a transposed view: gather columns with strided slices (C speed)
    (rows, cols), (s0, s1) = ref.size, ref.stride
    last = ref.offset + (rows - 1) * s0 + (cols - 1) * s1
    typecode = {"F32": "f", "F16": "H", "BF16": "H", "F64": "d"}[dtype]
    a = array.array(typecode)
    a.frombytes(mv[ref.offset * isz:(last + 1) * isz])
    out = array.array(typecode)
    for r in range(rows):
        out.extend(a[r * s0:r * s0 + (cols - 1) * s1 + 1:s1])
    return out.tobytes()


def _check_budget(up, max_bytes, path):
    total = sum(numel * ITEMSIZE[dtype] for dtype, numel, _ in up.storages.values())
    if total > max_bytes:
        raise ConvertError("%s: its storages claim %d bytes, more than the %d a model of this "
                           "config can hold" % (path, total, max_bytes))


try:  # zipfile inflates LZMA members with it; a damaged one raises LZMAError, not OSError
    import lzma
    _LZMA_ERRORS = (lzma.LZMAError,)
except ImportError:  # a Python without lzma: zipfile refuses such members with RuntimeError
    _LZMA_ERRORS = ()
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, struct.error,
              NotImplementedError, RuntimeError, OverflowError, UnicodeDecodeError, zlib.error, KeyError) \
    + _LZMA_ERRORS


def read_pytorch_bin(path, max_bytes):
    """{name: Tensor} of a torch.save()d state dict (zip format or the pre-1.6 legacy format).
    max_bytes bounds what the storages may claim (Config.max_checkpoint_bytes)."""
    try:
        f = open_regular(path)
    except OSError as e:
        raise ConvertError("cannot read %s: %s" % (path, e.strerror or _why(e)))
    with f:
        try:
            is_zip = zipfile.is_zipfile(f)  # raises BadZipFile on some damaged zip64 records
            f.seek(0)
        except ZIP_ERRORS as e:
            raise ConvertError("%s: a damaged zip archive (%s)" % (path, _why(e)))
        if not is_zip:
            return _read_legacy_pytorch(f, path, max_bytes)
        try:
            with zipfile.ZipFile(f) as zf:
                return _read_torch_zip(zf, path, max_bytes)
        except ZIP_ERRORS as e:
            raise ConvertError("%s: a damaged zip archive (%s)" % (path, _why(e)))


def _read_zip_member(zf, info, n, path):
    """Exactly n bytes from the start of a zip member whose declared size was checked."""
    with zf.open(info) as m:
        data = m.read(n)
    if len(data) != n:
        raise ConvertError("%s: member %s is truncated" % (path, _short(info.filename, 80)))
    return data


def _read_torch_zip(zf, path, max_bytes):
    infos = zf.infolist()
    pkls = [i for i in infos if i.filename.endswith("/data.pkl") or i.filename == "data.pkl"]
    if len(pkls) != 1:
        raise ConvertError("%s: no single data.pkl in the archive" % path)
    pinfo = pkls[0]
    if pinfo.file_size > MAX_PICKLE:
        raise ConvertError("%s: data.pkl declares %d bytes, more than a state dict needs" % (path, pinfo.file_size))
    root = pinfo.filename[:-len("data.pkl")]
    obj, up = _load_pickle_bytes(_read_zip_member(zf, pinfo, pinfo.file_size, path), path)
    refs = _tensor_refs(obj, up, path)
    _check_budget(up, max_bytes, path)
    members = {i.filename: i for i in infos}
    for key, (dtype, numel, st) in up.storages.items():
        info = members.get(root + "data/" + key)
        if info is None:
            raise ConvertError("%s: storage %s is missing" % (path, key))
        nbytes = numel * ITEMSIZE[dtype]
        if info.file_size < nbytes:
            raise ConvertError("%s: storage %s holds %d bytes, its tensors need %d"
                               % (path, key, info.file_size, nbytes))
        st.data = _read_zip_member(zf, info, nbytes, path)
    return _lazy_tensors(refs, up, path)


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _read_legacy_pytorch(f, path, max_bytes):
    """The pre-1.6 format from the open file f: five pickles, then each storage's bytes."""
    try:
        size = os.fstat(f.fileno()).st_size

        def next_pickle(legacy=False):
            pos = f.tell()
            n = _scan_pickle(f, min(MAX_PICKLE, size - pos), path)
            f.seek(pos)
            return _unpickle(f.read(n), path, legacy)

        try:
            magic = next_pickle()[0]
        except ConvertError:
            raise ConvertError("%s: neither a zip archive nor a pytorch checkpoint" % path)
        if not _is_int(magic) or magic != LEGACY_MAGIC:
            raise ConvertError("%s: not a pytorch checkpoint" % path)
        next_pickle()  # protocol version
        next_pickle()  # system info
        obj, up = next_pickle(legacy=True)
        keys = next_pickle()[0]
        refs = _tensor_refs(obj, up, path)
        _check_budget(up, max_bytes, path)
        if not isinstance(keys, list) or len(keys) > len(up.storages) or \
                not all(isinstance(k, str) or (_is_int(k) and 0 <= k < MAX_INDEX) for k in keys):
            raise ConvertError("%s: the storage list is not a list of keys" % path)
        for key in keys:
            have = up.storages.get(str(key))
            hdr = f.read(8)
            if len(hdr) != 8:
                raise ConvertError("%s: truncated" % path)
            (numel,) = struct.unpack("<q", hdr)
            if have is None or have[2].data is not None or numel != have[1]:
                raise ConvertError("%s: storage %s is inconsistent with the pickle" % (path, _short(key)))
            nbytes = numel * ITEMSIZE[have[0]]
            if nbytes > size - f.tell():
                raise ConvertError("%s: truncated storage %s" % (path, _short(key)))
            have[2].data = f.read(nbytes)
            if len(have[2].data) != nbytes:
                raise ConvertError("%s: truncated storage %s" % (path, _short(key)))
        for key, (_, _, st) in up.storages.items():
            if st.data is None:
                raise ConvertError("%s: storage %s is missing" % (path, key))
    except OSError as e:
        raise ConvertError("cannot read %s: %s" % (path, e.strerror or _why(e)))
    return _lazy_tensors(refs, up, path)

# ----------------------------------------------------------------------------------------
# Downloading from the Hugging Face Hub
# ----------------------------------------------------------------------------------------

MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def cache_root():
    if os.environ.get("GPT2C_CACHE"):
        return os.environ["GPT2C_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "gpt2c")


def fmt_bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return ("%.0f %s" if unit == "B" else "%.1f %s") % (n, unit)
        n /= 1000.0


class Progress:
    """A one-line progress bar on stderr (redrawn in place on a terminal)."""

    def __init__(self, label, total, start):
        self.label, self.total, self.done = label, total, start
        self.t0, self.start, self.last = time.time(), start, 0.0
        self.tty = sys.stderr.isatty()
        self.last_pct = -10

    def update(self, n, final=False):
        self.done += n
        now = time.time()
        if not final and now - self.last < 0.1:
            return
        self.last = now
        rate = (self.done - self.start) / max(now - self.t0, 1e-6)
        if self.total:
            frac = min(self.done / self.total, 1.0)
            width = 30
            fill = int(frac * width)
            bar = "=" * fill + (">" if fill < width else "") + " " * (width - fill - 1)
            line = "%-20s %3d%% [%s] %s / %s  %s/s" % (
                self.label, int(frac * 100), bar, fmt_bytes(self.done), fmt_bytes(self.total),
                fmt_bytes(rate))
            pct = int(frac * 100)
        else:
            line = "%-20s %s  %s/s" % (self.label, fmt_bytes(self.done), fmt_bytes(rate))
            pct = self.last_pct + 10 if final else self.last_pct
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
        elif final or pct >= self.last_pct + 10:
            sys.stderr.write(line + "\n")
            self.last_pct = pct
        sys.stderr.flush()


def download(model_id, filename, dest_dir, revision="main", required=True):
    """Fetch one file of a Hub repository into dest_dir, resuming a partial download.
    Returns the local path, or None if the file does not exist and required is False."""
    final = os.path.join(dest_dir, filename)
    if os.path.exists(final):
        return final
    endpoint = os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")
    url = "%s/%s/resolve/%s/%s" % (endpoint, model_id, revision, filename)
    part = final + ".part"
    have = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {"User-Agent": "gpt2c-convert/1.0"}
    if os.environ.get("HF_TOKEN"):
        headers["Authorization"] = "Bearer " + os.environ["HF_TOKEN"]
    if have:
        headers["Range"] = "bytes=%d-" % have
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=30)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the partial file is already complete
            os.replace(part, final)
            return final
        if e.code in (401, 403, 404):
            if not required:
                return None
            raise ConvertError("%s: %s not found on %s (HTTP %d): is '%s' a GPT-2 model id?"
                               % (model_id, filename, endpoint, e.code, model_id))
        raise ConvertError("downloading %s failed: HTTP %d %s" % (url, e.code, e.reason))
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ConvertError("cannot download '%s': %s is unreachable (%s); convert a local "
                           "directory instead" % (model_id, endpoint, reason))
    with resp:
        status = getattr(resp, "status", 200)
        if status != 206:
            have = 0  # the server ignored the range: start over
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        os.makedirs(dest_dir, exist_ok=True)
        bar = Progress(filename, total, have)
        try:
            with open(part, "ab" if have else "wb") as out:
                while True:
                    chunk = resp.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                    bar.update(len(chunk))
        except (urllib.error.URLError, OSError) as e:
            sys.stderr.write("\n")
            raise ConvertError("download of %s interrupted (%s); run again to resume"
                               % (filename, getattr(e, "reason", e)))
        bar.update(0, final=True)
    if total is not None and os.path.getsize(part) != total:
        raise ConvertError("download of %s incomplete (%d of %d bytes); run again to resume"
                           % (filename, os.path.getsize(part), total))
    os.replace(part, final)
    return final


def fetch_model(model_id, revision="main"):
    """Download what a conversion needs; returns the local directory."""
    if not MODEL_ID_RE.match(model_id) or ".." in model_id:
        raise ConvertError("'%s' is neither a local directory nor a Hugging Face model id" % model_id)
    dest = os.path.join(cache_root(), model_id.replace("/", "--"), revision)
    log("downloading %s from %s into %s" % (model_id, os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT), dest))
    for name in ("config.json", "vocab.json", "merges.txt"):
        download(model_id, name, dest, revision)
    if download(model_id, "model.safetensors", dest, revision, required=False) is None:
        download(model_id, "pytorch_model.bin", dest, revision)
    return dest


# ----------------------------------------------------------------------------------------
# Hugging Face names -> GGUF names
# ----------------------------------------------------------------------------------------

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
BLOCK_NAMES = {
    "ln_1.weight": "attn_norm.weight", "ln_1.bias": "attn_norm.bias",
    "attn.c_attn.weight": "attn_qkv.weight", "attn.c_attn.bias": "attn_qkv.bias",
    "attn.c_proj.weight": "attn_output.weight", "attn.c_proj.bias": "attn_output.bias",
    "ln_2.weight": "ffn_norm.weight", "ln_2.bias": "ffn_norm.bias",
    "mlp.c_fc.weight": "ffn_up.weight", "mlp.c_fc.bias": "ffn_up.bias",
    "mlp.c_proj.weight": "ffn_down.weight", "mlp.c_proj.bias": "ffn_down.bias",
}
TOP_NAMES = {
    "wte.weight": "token_embd.weight", "wpe.weight": "position_embd.weight",
    "ln_f.weight": "output_norm.weight", "ln_f.bias": "output_norm.bias",
}


def map_tensors(tensors, cfg):
    """[(gguf_name, Tensor, transpose)] in file order, checking that nothing is missing or
    extra and that every shape is the one cfg implies (before any tensor's bytes are read)."""
    src = OrderedDict()
    for name, t in tensors.items():
        short = name[len("transformer."):] if name.startswith("transformer.") else name
        if re.match(r"^h\.\d+\.attn\.(masked_)?bias$", short):
            continue  # the causal-mask buffers of old checkpoints, not weights
        if short in src:
            raise ConvertError("tensor %s appears twice in the checkpoint" % _short(short, 80))
        src[short] = t
    expect = cfg.expected_shapes()
    out = []

    def take(hf, gg, transpose=False):
        if hf not in src:
            raise ConvertError("tensor %s is missing from the checkpoint" % hf)
        t = src.pop(hf)
        short = gg.split(".", 2)[-1] if gg.startswith("blk.") else gg
        if t.shape != expect[short]:
            raise ConvertError("tensor %s has shape %s, expected %s (from config.json)" % (hf, t.shape, expect[short]))
        out.append((gg, t, transpose))

    take("wte.weight", "token_embd.weight")
    take("wpe.weight", "position_embd.weight")
    for i in range(cfg.n_layer):
        for hf, gg in BLOCK_NAMES.items():
            take("h.%d.%s" % (i, hf), "blk.%d.%s" % (i, gg), hf in CONV1D)
    take("ln_f.weight", "output_norm.weight")
    take("ln_f.bias", "output_norm.bias")
    lm = None
    if "lm_head.weight" in src:
        wte = out[0][1]
        take("lm_head.weight", "output.weight")
        lm = out.pop()[1]
        if lm.dtype != wte.dtype or bytes(lm.data) != bytes(wte.data):
            out.append(("output.weight", lm, False))  # an untied output matrix
    if src:
        raise ConvertError("unexpected tensors in the checkpoint: %s"
                           % ", ".join(_short(n, 60) for n in list(src)[:5]))
    return out


def read_checkpoint(src_dir, cfg):
    """{name: Tensor} of the directory's model.safetensors, else its pytorch_model.bin."""
    st_path = os.path.join(src_dir, "model.safetensors")
    pt_path = os.path.join(src_dir, "pytorch_model.bin")
    if os.path.exists(st_path):
        return read_safetensors(st_path)
    if os.path.exists(pt_path):
        return read_pytorch_bin(pt_path, cfg.max_checkpoint_bytes())
    raise ConvertError("%s has neither model.safetensors nor pytorch_model.bin" % src_dir)
# ----------------------------------------------------------------------------------------
# Writing GGUF
# ----------------------------------------------------------------------------------------

def gguf_string(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, value):
    out = gguf_string(key) + struct.pack("<I", vtype)
    if vtype == T_UINT32:
        return out + struct.pack("<I", value)
    if vtype == T_FLOAT32:
        return out + struct.pack("<f", value)
    if vtype == T_BOOL:
        return out + struct.pack("<B", 1 if value else 0)
    if vtype == T_STRING:
        return out + gguf_string(value)
    raise ValueError(vtype)


def kv_array(key, etype, values):
    out = [gguf_string(key), struct.pack("<IIQ", T_ARRAY, etype, len(values))]
    if etype == T_STRING:
        out.extend(gguf_string(v) for v in values)
    elif etype == T_INT32:
        out.append(struct.pack("<%di" % len(values), *values))
    else:
        raise ValueError(etype)
    return b"".join(out)


def pad_to(n, align=ALIGNMENT):
    return (align - n % align) % align


def tensor_payload(t, transpose, out_type):
    """The bytes of t as stored in GGUF: [out][in] row-major, in out_type."""
    vals = None
    if transpose:
        rows, cols = t.shape  # Conv1D: [in, out]
        a = t.floats()
        vals = array.array("f")
        for c in range(cols):           # output row c = input column c, a strided slice
            vals.extend(a[c::cols])
    if out_type == GGML_F32:
        if vals is None:
            if t.dtype == "F32" and sys.byteorder == "little":
                return t.data
            vals = t.floats()
        if sys.byteorder == "big":
            vals.byteswap()
        return vals.tobytes()
    # F16
    if vals is None:
        if t.dtype == "F16":
            return t.data
        vals = t.floats()
    return pack_f16(vals)


def pack_f16(vals):
    chunks = []
    step = 1 << 20
    for i in range(0, len(vals), step):
        part = vals[i:i + step]
        try:
            chunks.append(struct.pack("<%de" % len(part), *part))
        except OverflowError:  # |x| > 65504: round to infinity, as a float16 cast does
            chunks.append(b"".join(struct.pack("<e", x if not abs(x) > 65504 else
                                               (float("inf") if x > 0 else float("-inf")))
                                   for x in part))
    return b"".join(chunks)


def plan_gguf(cfg, tokens, token_types, merges, plan, out_type_name):
    """(header bytes, [(tensor, transpose, ggml type, nbytes)]): the whole file but the payloads."""
    out_type = GGML_F16 if out_type_name == "f16" else GGML_F32
    infos = []
    offset = 0
    for tname, t, transpose in plan:
        shape = list(reversed(t.shape)) if transpose else list(t.shape)  # row-major [out][in]
        ttype = out_type if len(shape) == 2 else GGML_F32
        ne = list(reversed(shape))  # GGUF lists dimensions fastest first
        nbytes = t.numel() * (4 if ttype == GGML_F32 else 2)
        infos.append((tname, t, transpose, ne, ttype, offset, nbytes))
        offset += nbytes + pad_to(nbytes)
    meta = [
        kv("general.architecture", T_STRING, "gpt2"),
        kv("general.name", T_STRING, cfg.name.encode("utf-8", "replace")),
        kv("general.file_type", T_UINT32, FILE_TYPE[out_type_name]),
        kv("general.alignment", T_UINT32, ALIGNMENT),
        kv("gpt2.context_length", T_UINT32, cfg.n_ctx),
        kv("gpt2.embedding_length", T_UINT32, cfg.n_embd),
        kv("gpt2.feed_forward_length", T_UINT32, cfg.n_ff),
        kv("gpt2.block_count", T_UINT32, cfg.n_layer),
        kv("gpt2.attention.head_count", T_UINT32, cfg.n_head),
        kv("gpt2.attention.layer_norm_epsilon", T_FLOAT32, cfg.eps),
        kv("tokenizer.ggml.model", T_STRING, "gpt2"),
        kv("tokenizer.ggml.pre", T_STRING, "gpt-2"),
        kv_array("tokenizer.ggml.tokens", T_STRING, tokens),
        kv_array("tokenizer.ggml.token_type", T_INT32, token_types),
        kv_array("tokenizer.ggml.merges", T_STRING, merges),
        kv("tokenizer.ggml.bos_token_id", T_UINT32, cfg.bos),
        kv("tokenizer.ggml.eos_token_id", T_UINT32, cfg.eos),
        kv("tokenizer.ggml.add_bos_token", T_BOOL, False),
    ]
    header = [GGUF_MAGIC, struct.pack("<IQQ", GGUF_VERSION, len(infos), len(meta))] + meta
    for tname, t, transpose, ne, ttype, off, nbytes in infos:
        header.append(gguf_string(tname) + struct.pack("<I", len(ne)) +
                      struct.pack("<%dQ" % len(ne), *ne) + struct.pack("<IQ", ttype, off))
    head = b"".join(header)
    head += b"\0" * pad_to(len(head))
    return head, [(t, transpose, ttype, nbytes) for _, t, transpose, _, ttype, _, nbytes in infos]


def write_payloads(f, head, parts):
    """Writes the file to f (any object with write); returns the number of bytes written."""
    f.write(head)
    n = len(head)
    for t, transpose, ttype, nbytes in parts:
        payload = tensor_payload(t, transpose, ttype)
        if len(payload) != nbytes:  # cannot happen: the shapes were checked
            raise ConvertError("internal error: a tensor of %d bytes, expected %d" % (len(payload), nbytes))
        f.write(payload)
        f.write(b"\0" * pad_to(nbytes))
        n += nbytes + pad_to(nbytes)
    return n


def check_output_path(out_path):
    """Refuses an output that exists and is not a regular file (a device, a FIFO, a directory):
    the rename would replace it by a regular file. A symlink to a regular file is replaced
    by the new file; the file it points to is left alone."""
    try:
        st = os.stat(out_path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise ConvertError("cannot write %s: %s" % (out_path, e.strerror or _why(e)))
    if not stat.S_ISREG(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise ConvertError("cannot write %s: it exists and is %s" % (out_path, kind))


def write_atomically(out_path, write):
    """Calls write(f) on a new temporary file next to out_path, then renames it over out_path.
    The temporary has a unique name and is created with O_CREAT | O_EXCL | O_NOFOLLOW (a link
    planted at that name is never followed), mode 0666 less the umask as for any new file;
    it is removed on any failure, so out_path is either the old file or the complete new one."""
    check_output_path(out_path)
    d, base = os.path.split(os.path.abspath(out_path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = os.path.join(d, ".%s.%s.tmp" % (base, secrets.token_hex(6)))
        try:
            fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise ConvertError("cannot write %s: %s" % (out_path, e.strerror or _why(e)))
    else:
        raise ConvertError("cannot write %s: no free temporary name in %s" % (out_path, d))
    done = False
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        check_output_path(out_path)  # it may have appeared while we wrote
        os.replace(tmp, out_path)
        done = True
    except OSError as e:
        raise ConvertError("cannot write %s: %s" % (out_path, e.strerror or _why(e)))
    finally:
        if not done:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def prepare(src_dir, out_type_name, name=None, read_tok=None):
    """Reads and checks everything a conversion needs; nothing is written.
    Returns (cfg, header bytes, payload parts). read_tok replaces read_tokenizer (the fuzz
    harness caches the fixture's tokenizer with it)."""
    cfg = parse_config(load_json_file(os.path.join(src_dir, "config.json"), "GPT-2 config", MAX_CONFIG_BYTES))
    vocab, merges = (read_tok or read_tokenizer)(src_dir, cfg)
    plan = map_tensors(read_checkpoint(src_dir, cfg), cfg)
    tokens, token_types = token_list(vocab, cfg.n_vocab)
    if name is not None:
        cfg.name = name
    elif cfg.name is None:
        cfg.name = os.path.basename(os.path.abspath(src_dir))
    head, parts = plan_gguf(cfg, tokens, token_types, merges, plan, out_type_name)
    return cfg, head, parts


def convert(src_dir, out_path, out_type_name, name=None):
    t0 = time.time()
    cfg, head, parts = prepare(src_dir, out_type_name, name)
    write_atomically(out_path, lambda f: write_payloads(f, head, parts))
    n_params = sum(t.numel() for t, _, _, _ in parts)
    log("wrote %s: %d layers, %d heads, %d wide, context %d, %.1fM parameters, %s, %s in %.1f s"
        % (out_path, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_ctx, n_params / 1e6, out_type_name,
           fmt_bytes(os.path.getsize(out_path)), time.time() - t0))


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="convert.py",
        description="Convert a Hugging Face GPT-2 checkpoint (local directory or model id) to GGUF.")
    ap.add_argument("src", help="local Hugging Face directory, or a model id such as gpt2 or gpt2-medium")
    ap.add_argument("-o", "--output", required=True, help="the GGUF file to write")
    ap.add_argument("--type", choices=("f32", "f16"), default="f32",
                    help="type of the 2-D weight matrices (1-D tensors stay f32); default f32")
    ap.add_argument("--revision", default="main", help="Hub revision (branch, tag or commit) to download")
    args = ap.parse_args(argv)
    try:
        src, name = args.src, None
        if not os.path.isdir(src):
            if os.path.exists(src) or src.startswith((".", "/")) or src.endswith(("/", ".gguf")):
                raise ConvertError("%s: not a directory" % src)
            src, name = fetch_model(src, args.revision), src
        out_dir = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(out_dir):
            raise ConvertError("cannot write %s: directory %s does not exist" % (args.output, out_dir))
        check_output_path(args.output)
        convert(src, args.output, args.type, name)
    except ConvertError as e:
        log("convert.py: error: %s" % " ".join(str(e).splitlines()))
        return 1
    except MemoryError:
        log("convert.py: error: out of memory")
        return 1
    except KeyboardInterrupt:
        log("convert.py: interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
