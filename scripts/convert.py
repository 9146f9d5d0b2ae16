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
import json
import mmap
import os
import pickle
import re
import struct
import sys
import time
import urllib.error
import urllib.request
import zipfile
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
    __slots__ = ("dtype", "shape", "data")

    def __init__(self, dtype, shape, data):
        self.dtype = dtype    # "F32" | "F16" | "BF16" | "F64"
        self.shape = list(shape)
        self.data = data      # bytes-like, exactly numel * itemsize bytes

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
            n = self.numel()
            a.fromlist(list(struct.unpack("<%de" % n, self.data)))
            return a  # unpack already produced native floats
        elif self.dtype == "BF16":
            h = array.array("H")
            h.frombytes(self.data)
            if sys.byteorder == "big":
                h.byteswap()
            # a bfloat16 is the top half of a float32: shift it into place
            a = array.array("f", struct.pack("=%dI" % len(h), *[x << 16 for x in h]))
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


# ----------------------------------------------------------------------------------------
# Reading model.safetensors
# ----------------------------------------------------------------------------------------

SAFETENSORS_DTYPES = {"F32": "F32", "F16": "F16", "BF16": "BF16", "F64": "F64"}


def read_safetensors(path):
    """{name: Tensor} of a .safetensors file (memory-mapped; tensors are zero-copy views)."""
    with open(path, "rb") as f:  # the map keeps its own handle on the file
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise ConvertError("%s: too small to be a safetensors file" % path)
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    (hlen,) = struct.unpack("<Q", buf[:8])
    if hlen > size - 8 or hlen > 100 << 20:
        raise ConvertError("%s: header length %d exceeds the file" % (path, hlen))
    try:
        header = json.loads(bytes(buf[8:8 + hlen]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ConvertError("%s: header is not valid JSON (%s)" % (path, e))
    base = 8 + hlen
    view = memoryview(buf)
    out = OrderedDict()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = SAFETENSORS_DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise ConvertError("%s: tensor %s has unsupported dtype %s" % (path, name, info.get("dtype")))
        begin, end = info["data_offsets"]
        t = Tensor(dtype, info["shape"], None)
        if not (0 <= begin <= end <= size - base) or end - begin != t.numel() * ITEMSIZE[dtype]:
            raise ConvertError("%s: tensor %s has bad data offsets" % (path, name))
        t.data = view[base + begin:base + end]
        out[name] = t
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

STORAGE_DTYPES = {
    "FloatStorage": "F32", "HalfStorage": "F16", "BFloat16Storage": "BF16", "DoubleStorage": "F64",
}


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
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


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
        self.storages = {}

    def find_class(self, module, name):
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        fn = self.ALLOWED.get((module, name))
        if fn is None:
            raise ConvertError("pytorch checkpoint refers to %s.%s, which a weights file does not "
                               "need: refusing to load it" % (module, name))
        return fn

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise ConvertError("pytorch checkpoint has an unknown persistent id %r" % (pid[:1],))
        stype, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(stype, _StorageType):
            raise ConvertError("pytorch checkpoint has a storage of unsupported type")
        if self.legacy and len(pid) > 5 and pid[5] is not None:
            raise ConvertError("pytorch checkpoint uses storage views (not supported)")
        if key not in self.storages:
            self.storages[key] = _StorageRef(stype.dtype, key, numel)
        return self.storages[key]


def _materialize(ref, name):
    """Turn a _TensorRef into a contiguous Tensor (handles offsets and strides)."""
    st = ref.storage
    isz = ITEMSIZE[st.dtype]
    size, stride = ref.size, ref.stride
    numel = 1
    for s in size:
        numel *= s
    if numel == 0:
        return Tensor(st.dtype, size, b"")
    # the last element touched must lie inside the storage
    last = ref.offset + sum((s - 1) * d for s, d in zip(size, stride))
    if ref.offset < 0 or any(d < 0 for d in stride) or last >= st.numel or len(st.data) < st.numel * isz:
        raise ConvertError("pytorch checkpoint: tensor %s lies outside its storage" % name)
    contiguous = []
    acc = 1
    for s in reversed(size):
        contiguous.append(acc)
        acc *= s
    contiguous.reverse()
    mv = memoryview(st.data)
    if list(stride) == contiguous or numel == 1:
        return Tensor(st.dtype, size, mv[ref.offset * isz:(ref.offset + numel) * isz])
    if len(size) == 2 and stride[0] == 1:
        # a transposed view: gather columns with strided slices (C speed)
        typecode = {"F32": "f", "F16": "H", "BF16": "H", "F64": "d"}[st.dtype]
        a = array.array(typecode)
        a.frombytes(mv[ref.offset * isz:(last + 1) * isz])
        rows, cols = size
        out = array.array(typecode)
        for r in range(rows):
            out.extend(a[r * stride[0]:r * stride[0] + (cols - 1) * stride[1] + 1:stride[1]])
        return Tensor(st.dtype, size, out.tobytes())
    raise ConvertError("pytorch checkpoint: tensor %s has an unsupported memory layout" % name)


def read_pytorch_bin(path):
    """{name: Tensor} of a torch.save()d state dict (zip format or the pre-1.6 legacy format)."""
    if zipfile.is_zipfile(path):
        zf = zipfile.ZipFile(path)
        names = zf.namelist()
        pkls = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkls) != 1:
            raise ConvertError("%s: no data.pkl in the archive" % path)
        root = pkls[0][:-len("data.pkl")]
        up = _SafeUnpickler(zf.open(pkls[0]))
        try:
            obj = up.load()
        except ConvertError:
            raise
        except Exception as e:
            raise ConvertError("%s: cannot read the pickle (%s)" % (path, e))
        for key, st in up.storages.items():
            try:
                st.data = zf.read(root + "data/" + key)
            except KeyError:
                raise ConvertError("%s: storage %s is missing" % (path, key))
    else:
        obj, up = _read_legacy_pytorch(path)
    if not isinstance(obj, dict):
        raise ConvertError("%s: the checkpoint is not a state dict" % path)
    out = OrderedDict()
    for name, ref in obj.items():
        if isinstance(ref, _TensorRef):
            out[name] = _materialize(ref, name)
    return out


def _read_legacy_pytorch(path):
    with open(path, "rb") as f:
        try:
            magic = _SafeUnpickler(f).load()
            if magic != 0x1950A86A20F9469CFC6C:
                raise ConvertError("%s: not a pytorch checkpoint" % path)
            _SafeUnpickler(f).load()  # protocol version
            _SafeUnpickler(f).load()  # system info
            up = _SafeUnpickler(f, legacy=True)
            obj = up.load()
            keys = _SafeUnpickler(f).load()
        except ConvertError:
            raise
        except Exception as e:
            raise ConvertError("%s: not a readable pytorch checkpoint (%s)" % (path, e))
        for key in keys:
            st = up.storages.get(str(key))
            hdr = f.read(8)
            if len(hdr) != 8:
                raise ConvertError("%s: truncated" % path)
            (numel,) = struct.unpack("<q", hdr)
            nbytes = numel * ITEMSIZE[st.dtype] if st else 0
            data = f.read(nbytes)
            if st is None or len(data) != nbytes:
                raise ConvertError("%s: truncated or inconsistent storage %s" % (path, key))
            st.data = data
    return obj, up


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


def map_tensors(tensors, n_layer):
    """[(gguf_name, Tensor, transpose)] in file order, checking that nothing is missing."""
    src = OrderedDict()
    for name, t in tensors.items():
        short = name[len("transformer."):] if name.startswith("transformer.") else name
        if re.match(r"^h\.\d+\.attn\.(masked_)?bias$", short):
            continue  # the causal-mask buffers of old checkpoints, not weights
        src[short] = t
    out = []

    def take(hf, gg, transpose=False):
        if hf not in src:
            raise ConvertError("tensor %s is missing from the checkpoint" % hf)
        out.append((gg, src.pop(hf), transpose))

    take("wte.weight", "token_embd.weight")
    take("wpe.weight", "position_embd.weight")
    for i in range(n_layer):
        for hf, gg in BLOCK_NAMES.items():
            take("h.%d.%s" % (i, hf), "blk.%d.%s" % (i, gg), hf in CONV1D)
    take("ln_f.weight", "output_norm.weight")
    take("ln_f.bias", "output_norm.bias")
    lm = src.pop("lm_head.weight", None)
    if lm is not None:
        wte = out[0][1]
        if lm.shape != wte.shape or lm.dtype != wte.dtype or bytes(lm.data) != bytes(wte.data):
            out.append(("output.weight", lm, False))  # an untied output matrix
    if src:
        raise ConvertError("unexpected tensors in the checkpoint: %s" % ", ".join(list(src)[:5]))
    return out


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
            chunks.append(b"".join(struct.pack("<e", x if abs(x) <= 65504 else
                                               (float("inf") if x > 0 else float("-inf")))
                                   for x in part))
    return b"".join(chunks)


def convert(src_dir, out_path, out_type_name, name=None):
    t0 = time.time()

    def load_json(name):
        path = os.path.join(src_dir, name)
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except OSError as e:
            raise ConvertError("cannot read %s: %s" % (path, e.strerror))
        except ValueError as e:
            raise ConvertError("%s is not valid JSON: %s" % (path, e))

    cfg = load_json("config.json")
    if cfg.get("model_type", "gpt2") != "gpt2":
        raise ConvertError("config.json: model_type is %r, not gpt2" % cfg.get("model_type"))
    act = cfg.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ConvertError("config.json: activation %r is not supported (GPT-2 uses gelu_new)" % act)
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if cfg.get(flag):
            raise ConvertError("config.json: %s is not supported" % flag)
    try:
        n_layer, n_head, n_embd = int(cfg["n_layer"]), int(cfg["n_head"]), int(cfg["n_embd"])
        n_ctx = int(cfg.get("n_positions") or cfg["n_ctx"])
        n_vocab = int(cfg["vocab_size"])
    except (KeyError, TypeError, ValueError) as e:
        raise ConvertError("config.json lacks a GPT-2 setting: %s" % e)
    n_ff = int(cfg.get("n_inner") or 4 * n_embd)
    eps = float(cfg.get("layer_norm_epsilon", 1e-5))

    vocab = load_json("vocab.json")
    tokens = [None] * max(n_vocab, len(vocab))
    for s, i in vocab.items():
        if not isinstance(i, int) or not 0 <= i < len(tokens) or tokens[i] is not None:
            raise ConvertError("vocab.json: bad or duplicate id %r for %r" % (i, s))
        tokens[i] = s
    if len(tokens) != n_vocab:
        raise ConvertError("vocab.json has %d tokens but config.json says vocab_size %d"
                           % (len(tokens), n_vocab))
    token_types = []
    for i, s in enumerate(tokens):
        if s is None:
            tokens[i] = "[PAD%d]" % i
            token_types.append(TOKEN_CONTROL)
        else:
            token_types.append(TOKEN_CONTROL if s == "<|endoftext|>" else TOKEN_NORMAL)
    eos = int(cfg.get("eos_token_id", vocab.get("<|endoftext|>", n_vocab - 1)))
    bos = int(cfg.get("bos_token_id", eos))
    merges_path = os.path.join(src_dir, "merges.txt")
    try:
        with open(merges_path, encoding="utf-8") as f:
            merges = [ln.rstrip("\n") for ln in f if ln.rstrip("\n") and not ln.startswith("#version")]
    except OSError as e:
        raise ConvertError("cannot read %s: %s" % (merges_path, e.strerror))
    for m in merges:
        if len(m.split(" ")) != 2:
            raise ConvertError("merges.txt: malformed line %r" % m)

    st_path = os.path.join(src_dir, "model.safetensors")
    pt_path = os.path.join(src_dir, "pytorch_model.bin")
    if os.path.exists(st_path):
        tensors = read_safetensors(st_path)
    elif os.path.exists(pt_path):
        tensors = read_pytorch_bin(pt_path)
    else:
        raise ConvertError("%s has neither model.safetensors nor pytorch_model.bin" % src_dir)
    plan = map_tensors(tensors, n_layer)

    expect = {
        "token_embd.weight": [n_vocab, n_embd], "position_embd.weight": [n_ctx, n_embd],
        "output.weight": [n_vocab, n_embd],
        "attn_norm.weight": [n_embd], "attn_norm.bias": [n_embd],
        "attn_qkv.weight": [n_embd, 3 * n_embd], "attn_qkv.bias": [3 * n_embd],
        "attn_output.weight": [n_embd, n_embd], "attn_output.bias": [n_embd],
        "ffn_norm.weight": [n_embd], "ffn_norm.bias": [n_embd],
        "ffn_up.weight": [n_embd, n_ff], "ffn_up.bias": [n_ff],
        "ffn_down.weight": [n_ff, n_embd], "ffn_down.bias": [n_embd],
        "output_norm.weight": [n_embd], "output_norm.bias": [n_embd],
    }
    out_type = GGML_F16 if out_type_name == "f16" else GGML_F32
    infos = []
    offset = 0
    for tname, t, transpose in plan:
        short = tname.split(".", 2)[-1] if tname.startswith("blk.") else tname
        if t.shape != expect[short]:
            raise ConvertError("tensor %s has shape %s, expected %s" % (tname, t.shape, expect[short]))
        shape = list(reversed(t.shape)) if transpose else list(t.shape)  # row-major [out][in]
        ttype = out_type if len(shape) == 2 else GGML_F32
        ne = list(reversed(shape))  # GGUF lists dimensions fastest first
        nbytes = t.numel() * (4 if ttype == GGML_F32 else 2)
        infos.append((tname, t, transpose, ne, ttype, offset, nbytes))
        offset += nbytes + pad_to(nbytes)

    if name is None:
        name = str(cfg.get("_name_or_path") or os.path.basename(os.path.abspath(src_dir)))
    meta = [
        kv("general.architecture", T_STRING, "gpt2"),
        kv("general.name", T_STRING, name),
        kv("general.file_type", T_UINT32, FILE_TYPE[out_type_name]),
        kv("general.alignment", T_UINT32, ALIGNMENT),
        kv("gpt2.context_length", T_UINT32, n_ctx),
        kv("gpt2.embedding_length", T_UINT32, n_embd),
        kv("gpt2.feed_forward_length", T_UINT32, n_ff),
        kv("gpt2.block_count", T_UINT32, n_layer),
        kv("gpt2.attention.head_count", T_UINT32, n_head),
        kv("gpt2.attention.layer_norm_epsilon", T_FLOAT32, eps),
        kv("tokenizer.ggml.model", T_STRING, "gpt2"),
        kv("tokenizer.ggml.pre", T_STRING, "gpt-2"),
        kv_array("tokenizer.ggml.tokens", T_STRING, tokens),
        kv_array("tokenizer.ggml.token_type", T_INT32, token_types),
        kv_array("tokenizer.ggml.merges", T_STRING, merges),
        kv("tokenizer.ggml.bos_token_id", T_UINT32, bos),
        kv("tokenizer.ggml.eos_token_id", T_UINT32, eos),
        kv("tokenizer.ggml.add_bos_token", T_BOOL, False),
    ]
    header = [GGUF_MAGIC, struct.pack("<IQQ", GGUF_VERSION, len(infos), len(meta))] + meta
    for tname, t, transpose, ne, ttype, off, nbytes in infos:
        header.append(gguf_string(tname) + struct.pack("<I", len(ne)) +
                      struct.pack("<%dQ" % len(ne), *ne) + struct.pack("<IQ", ttype, off))
    head = b"".join(header)
    head += b"\0" * pad_to(len(head))

    tmp = out_path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(head)
            for tname, t, transpose, ne, ttype, off, nbytes in infos:
                payload = tensor_payload(t, transpose, ttype)
                assert len(payload) == nbytes, tname
                f.write(payload)
                f.write(b"\0" * pad_to(nbytes))
        os.replace(tmp, out_path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ConvertError("cannot write %s: %s" % (out_path, e.strerror or e))
    n_params = sum(t.numel() for _, t, _, _, _, _, _ in infos)
    log("wrote %s: %d layers, %d heads, %d wide, context %d, %.1fM parameters, %s, %s in %.1f s"
        % (out_path, n_layer, n_head, n_embd, n_ctx, n_params / 1e6, out_type_name,
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
        convert(src, args.output, args.type, name)
    except ConvertError as e:
        log("convert.py: error: %s" % e)
        return 1
    except KeyboardInterrupt:
        log("convert.py: interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
