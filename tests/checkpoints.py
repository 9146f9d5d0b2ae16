"""Builders of small Hugging Face checkpoints for the converter's tests and its fuzz harness
(standard library only): safetensors files from a header and bytes, torch.save()-style zip
archives from a list of tensor entries written as raw pickle opcodes (no torch needed), and
source directories that link the unchanged fixture files.

The fixture model is tests/data/model (2 layers, 64 wide, GPT-2's vocabulary).
"""
import io
import json
import os
import struct
import sys
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODEL = os.path.join(HERE, "data", "model")
FILES = ("config.json", "vocab.json", "merges.txt")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import convert  # noqa: E402


def fixture_bytes(name):
    with open(os.path.join(MODEL, name), "rb") as f:
        return f.read()


def fixture_config():
    return json.loads(fixture_bytes("config.json"))


# ---- safetensors ---------------------------------------------------------------------------

def split_safetensors(blob):
    """(header dict, data bytes) of a safetensors image."""
    (n,) = struct.unpack_from("<Q", blob, 0)
    return json.loads(blob[8:8 + n].decode("utf-8")), blob[8 + n:]


def safetensors(header, data, raw_header=None):
    """A safetensors image: header (any JSON value) or raw_header (bytes) + data."""
    h = raw_header if raw_header is not None else json.dumps(header).encode("utf-8")
    return struct.pack("<Q", len(h)) + h + data


# ---- pytorch_model.bin ---------------------------------------------------------------------
# An entry is (name, key, storage type, storage numel, offset, size, stride). The pickle is the
# one torch.save writes for a state dict: an OrderedDict of _rebuild_tensor_v2 calls whose
# storages are persistent ids ('storage', torch.<Type>, key, 'cpu', numel).

def _str(s):
    b = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(b)) + b


def _int(v):
    """LONG1: any int, negative or huge."""
    if v == 0:
        return b"\x8a\x00"
    n = (v.bit_length() + 8) // 8
    return b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True)


def _tuple(vals):
    return b"(" + b"".join(_int(v) for v in vals) + b"t"


def torch_pickle(entries, legacy=False):
    out = [b"\x80\x02", b"ccollections\nOrderedDict\n)R", b"("]
    for name, key, stype, numel, offset, size, stride in entries:
        pid = b"(" + _str("storage") + b"ctorch\n" + stype.encode() + b"\n" + _str(str(key)) + \
              _str("cpu") + _int(numel) + (b"N" if legacy else b"") + b"tQ"
        out.append(_str(name) + b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + _int(offset) +
                   _tuple(size) + _tuple(stride) + b"\x89ccollections\nOrderedDict\n)RtR")
    out.append(b"u.")
    return b"".join(out)


class Deflated:
    """A member already deflated: (raw deflate stream, its CRC-32, its inflated size)."""

    def __init__(self, raw, crc, size):
        self.raw, self.crc, self.size = raw, crc, size


_BOMBS = {}


def bomb_member(mb):
    """A Deflated member of `mb` MB of zeros (about 1000 times smaller), made once."""
    if mb not in _BOMBS:
        # after a full flush the compressor starts afresh: each MB of zeros deflates to the same
        # bytes, so one piece repeated mb times is the stream (and is made in no time)
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        zeros = bytes(1 << 20)
        piece = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
        again = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
        assert piece == again
        crc = 0
        for _ in range(mb):
            crc = zlib.crc32(zeros, crc)
        _BOMBS[mb] = Deflated(piece * mb + c.flush(), crc, mb << 20)
    return _BOMBS[mb]


def _write_deflated(z, name, m):
    """Adds a Deflated member to an open ZipFile without inflating it (zip64 sizes)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.CRC, info.compress_size, info.file_size = m.crc, len(m.raw), m.size
    info.header_offset = z.fp.tell()
    z._writecheck(info)
    z._didModify = True
    z.fp.write(info.FileHeader(zip64=True))
    z.fp.write(m.raw)
    z.filelist.append(info)
    z.NameToInfo[name] = info
    z.start_dir = z.fp.tell()


def torch_zip(pkl, storages, root="archive", compression=zipfile.ZIP_STORED, extra=()):
    """A torch.save zip: root/data.pkl, root/data/<key> for each storage (bytes, or a Deflated
    member written as it is), any extra members."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        z.writestr(root + "/data.pkl", pkl)
        for key, data in storages.items():
            if isinstance(data, Deflated):
                _write_deflated(z, "%s/data/%s" % (root, key), data)
            else:
                z.writestr("%s/data/%s" % (root, key), data)
        for name, data in extra:
            z.writestr(name, data)
    return buf.getvalue()


def fixture_entries():
    """(entries, {key: bytes}, root) of tests/data/model/pytorch_model.bin."""
    path = os.path.join(MODEL, "pytorch_model.bin")
    with zipfile.ZipFile(path) as zf:
        pkl_name = [n for n in zf.namelist() if n.endswith("data.pkl")][0]
        root = pkl_name[:-len("/data.pkl")]
        obj, up = convert._load_pickle_bytes(zf.read(pkl_name), path)
        storages = {key: zf.read("%s/data/%s" % (root, key)) for key in up.storages}
    names = {v: k for k, v in convert.STORAGE_DTYPES.items()}
    entries = []
    for name, ref, key in convert._tensor_refs(obj, up, path):
        dtype, numel, _ = up.storages[key]
        entries.append((name, key, names[dtype], numel, ref.offset, list(ref.size), list(ref.stride)))
    return entries, storages, root


# ---- source directories --------------------------------------------------------------------

def make_src(d, **files):
    """A checkpoint directory d: each keyword names a file (config_json, vocab_json, merges_txt,
    model_safetensors, pytorch_model_bin) given as bytes, or a dict/list for the JSON files;
    config.json, vocab.json and merges.txt not given are links to the fixture's, and with
    neither weights file given, model.safetensors is one too."""
    os.makedirs(d, exist_ok=True)
    names = {k: k.replace("_json", ".json").replace("_txt", ".txt").replace("_safetensors", ".safetensors")
             .replace("_bin", ".bin") for k in files}
    for k, v in files.items():
        if not isinstance(v, (bytes, bytearray)):
            v = json.dumps(v).encode("utf-8")
        with open(os.path.join(d, names[k]), "wb") as f:
            f.write(v)
    given = set(names.values())
    for f in FILES:
        if f not in given:
            os.symlink(os.path.join(MODEL, f), os.path.join(d, f))
    if "model.safetensors" not in given and "pytorch_model.bin" not in given:
        os.symlink(os.path.join(MODEL, "model.safetensors"), os.path.join(d, "model.safetensors"))
    return d
