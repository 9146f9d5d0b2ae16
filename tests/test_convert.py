#!/usr/bin/env python3
"""Tests of scripts/convert.py (standard library only): downloading from a Hugging Face-style
server (a local one on 127.0.0.1: this machine has no internet), resuming a cut download,
the unreachable-network report, the restricted unpickler, and the old Hub naming.

The tensor values themselves are checked by the C suite (tests/test_model.c).
"""
import http.server
import io
import json
import os
import pickle
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import unittest
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODEL = os.path.join(HERE, "data", "model")
CONVERT = os.path.join(ROOT, "scripts", "convert.py")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import convert  # noqa: E402


def read_gguf(path):
    """{tensor name: (type, ne, data bytes)} and {key: raw value} of a GGUF file."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0] if len(v) == 1 else v

    def string():
        nonlocal pos
        n = take("Q")
        s = data[pos:pos + n]
        pos += n
        return s.decode("utf-8")

    sizes = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        return take(sizes[t])

    assert data[:4] == b"GGUF"
    pos = 4
    version, n_t, n_kv = take("I"), take("Q"), take("Q")
    meta = {}
    for _ in range(n_kv):
        k = string()
        meta[k] = value(take("I"))
    infos = []
    for _ in range(n_t):
        name = string()
        nd = take("I")
        ne = [take("Q") for _ in range(nd)]
        infos.append((name, ne, take("I"), take("Q")))
    align = meta.get("general.alignment", 32)
    start = (pos + align - 1) // align * align
    tensors = {}
    for name, ne, t, off in infos:
        n = 1
        for d in ne:
            n *= d
        nbytes = n * (4 if t == 0 else 2)
        tensors[name] = (t, ne, data[start + off:start + off + nbytes])
    return tensors, meta


class Hub(http.server.BaseHTTPRequestHandler):
    """Serves tests/data/model as /<org>/<name>/resolve/main/<file>, with HTTP ranges."""
    files = {}
    cut_after = None       # send only this many bytes of a body, then drop the connection
    ranges_seen = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        parts = self.path.split("/")
        name = parts[-1]
        if "/resolve/main/" not in self.path or name not in self.files or "missing" in self.path:
            self.send_error(404)
            return
        body = self.files[name]
        start = 0
        rng = self.headers.get("Range")
        if rng:
            Hub.ranges_seen.append((name, rng))
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(body) - 1, len(body)))
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        chunk = body[start:]
        if Hub.cut_after is not None and name == "model.safetensors":
            self.wfile.write(chunk[:Hub.cut_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(chunk)


def serve():
    for f in ("config.json", "vocab.json", "merges.txt", "model.safetensors"):
        with open(os.path.join(MODEL, f), "rb") as fh:
            Hub.files[f] = fh.read()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def array_module():
    import array
    return array


def contiguous_strides(shape):
    out, acc = [], 1
    for s in reversed(shape):
        out.append(acc)
        acc *= s
    return list(reversed(out))


def run_convert(args, env):
    e = dict(os.environ)
    e.update(env)
    return subprocess.run([sys.executable, CONVERT] + args, env=e, capture_output=True, text=True, timeout=300)


class ConverterTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.local = os.path.join(cls.tmp.name, "local.gguf")
        r = run_convert([MODEL, "-o", cls.local], {})
        assert r.returncode == 0, r.stderr
        cls.local_tensors, cls.local_meta = read_gguf(cls.local)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_layout_and_metadata(self):
        t, meta = self.local_tensors, self.local_meta
        self.assertEqual(meta["general.architecture"], "gpt2")
        self.assertEqual(meta["gpt2.block_count"], 2)
        self.assertEqual(meta["gpt2.embedding_length"], 64)
        self.assertEqual(meta["gpt2.context_length"], 128)
        self.assertEqual(meta["gpt2.feed_forward_length"], 256)
        self.assertEqual(meta["gpt2.attention.head_count"], 2)
        self.assertEqual(meta["tokenizer.ggml.model"], "gpt2")
        self.assertEqual(len(meta["tokenizer.ggml.tokens"]), 50257)
        self.assertEqual(len(meta["tokenizer.ggml.merges"]), 50000)
        self.assertEqual(meta["tokenizer.ggml.tokens"][50256], "<|endoftext|>")
        self.assertEqual(meta["tokenizer.ggml.eos_token_id"], 50256)
        self.assertEqual(t["token_embd.weight"][1], [64, 50257])
        self.assertEqual(t["blk.0.attn_qkv.weight"][1], [64, 192])   # ne = [in, out]
        self.assertEqual(t["blk.1.ffn_down.weight"][1], [256, 64])
        self.assertNotIn("output.weight", t)  # tied to token_embd
        self.assertEqual(len(t), 4 + 2 * 12)

    def test_download_from_hub(self):
        srv = serve()
        try:
            with tempfile.TemporaryDirectory() as cache:
                out = os.path.join(cache, "hub.gguf")
                env = {"HF_ENDPOINT": "http://127.0.0.1:%d" % srv.server_port, "GPT2C_CACHE": cache}
                r = run_convert(["testorg/tiny-gpt2", "-o", out], env)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("model.safetensors", r.stderr)      # the progress report
                self.assertIn("100%", r.stderr)
                tensors, meta = read_gguf(out)
                self.assertEqual(meta["general.name"], "testorg/tiny-gpt2")
                self.assertEqual(tensors, self.local_tensors)
                # cached: a second run downloads nothing
                Hub.ranges_seen.clear()
                r = run_convert(["testorg/tiny-gpt2", "-o", out], env)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertNotIn("%", r.stderr)
        finally:
            srv.shutdown()
            srv.server_close()

    def test_resume_after_a_cut(self):
        srv = serve()
        try:
            with tempfile.TemporaryDirectory() as cache:
                out = os.path.join(cache, "hub.gguf")
                env = {"HF_ENDPOINT": "http://127.0.0.1:%d" % srv.server_port, "GPT2C_CACHE": cache}
                Hub.cut_after = 5_000_000
                r = run_convert(["testorg/cut", "-o", out], env)
                self.assertNotEqual(r.returncode, 0)
                self.assertIn("run again to resume", r.stderr)
                part = os.path.join(cache, "testorg--cut", "main", "model.safetensors.part")
                self.assertEqual(os.path.getsize(part), 5_000_000)
                Hub.cut_after = None
                Hub.ranges_seen.clear()
                r = run_convert(["testorg/cut", "-o", out], env)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn(("model.safetensors", "bytes=5000000-"), Hub.ranges_seen)
                self.assertEqual(read_gguf(out)[0], self.local_tensors)
        finally:
            Hub.cut_after = None
            srv.shutdown()
            srv.server_close()

    def test_unreachable_network_is_one_line(self):
        with tempfile.TemporaryDirectory() as cache:
            # port 9 (discard) on loopback: nothing listens, the connection is refused
            r = run_convert(["gpt2", "-o", os.path.join(cache, "x.gguf")],
                            {"HF_ENDPOINT": "http://127.0.0.1:9", "GPT2C_CACHE": cache})
            self.assertEqual(r.returncode, 1)
            self.assertEqual(r.stderr.count("\n"), 2, r.stderr)  # the "downloading" line + the error
            self.assertIn("unreachable", r.stderr)

    def test_unknown_model_id(self):
        srv = serve()
        try:
            with tempfile.TemporaryDirectory() as cache:
                r = run_convert(["missing/model", "-o", os.path.join(cache, "x.gguf")],
                                {"HF_ENDPOINT": "http://127.0.0.1:%d" % srv.server_port, "GPT2C_CACHE": cache})
                self.assertEqual(r.returncode, 1)
                self.assertIn("not found", r.stderr)
        finally:
            srv.shutdown()
            srv.server_close()

    def test_malicious_pickle_is_refused(self):
        with tempfile.TemporaryDirectory() as d:
            marker = os.path.join(d, "pwned")

            class Evil:
                def __reduce__(self):
                    return (os.system, ("touch " + marker,))

            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as z:
                z.writestr("archive/data.pkl", pickle.dumps({"wte.weight": Evil()}, protocol=2))
            src = os.path.join(d, "src")
            os.mkdir(src)
            for f in ("config.json", "vocab.json", "merges.txt"):
                os.symlink(os.path.join(MODEL, f), os.path.join(src, f))
            with open(os.path.join(src, "pytorch_model.bin"), "wb") as f:
                f.write(buf.getvalue())
            r = run_convert([src, "-o", os.path.join(d, "x.gguf")], {})
            self.assertEqual(r.returncode, 1)
            self.assertIn("refusing", r.stderr)
            self.assertFalse(os.path.exists(marker))

    def test_old_hub_names_and_mask_buffers(self):
        """Old checkpoints name tensors without 'transformer.' and carry attn.bias buffers."""
        st = convert.read_safetensors(os.path.join(MODEL, "model.safetensors"))
        header, blobs, off = {}, [], 0
        for name, t in st.items():
            blobs.append(bytes(t.data))
            header[name.replace("transformer.", "")] = {
                "dtype": "F32", "shape": t.shape, "data_offsets": [off, off + len(blobs[-1])]}
            off += len(blobs[-1])
        mask = struct.pack("<%df" % 16, *([1.0] * 16))
        header["h.0.attn.bias"] = {"dtype": "F32", "shape": [1, 1, 4, 4], "data_offsets": [off, off + 64]}
        blobs.append(mask)
        hj = json.dumps(header).encode()
        with tempfile.TemporaryDirectory() as d:
            for f in ("config.json", "vocab.json", "merges.txt"):
                os.symlink(os.path.join(MODEL, f), os.path.join(d, f))
            with open(os.path.join(d, "model.safetensors"), "wb") as f:
                f.write(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))
            out = os.path.join(d, "old.gguf")
            r = run_convert([d, "-o", out], {})
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(read_gguf(out)[0], self.local_tensors)

    def test_legacy_pytorch_format(self):
        """A pre-1.6 torch.save file (pickles + raw storages, no zip), with a transposed view
        and a storage shared by two tensors, converts to the same tensors."""
        import types
        from collections import OrderedDict as OD
        torch_mod = types.ModuleType("torch")
        utils_mod = types.ModuleType("torch._utils")

        class FloatStorage:  # stands for torch.FloatStorage in the pickle
            pass
        FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
        torch_mod.FloatStorage = FloatStorage

        def _rebuild_tensor_v2(*args):
            raise AssertionError("never called when writing")
        _rebuild_tensor_v2.__module__ = "torch._utils"
        _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
        utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2

        class Storage:
            def __init__(self, key, data):
                self.key, self.data = key, data

        class FakeTensor:
            def __init__(self, storage, offset, size, stride):
                self.args = (storage, offset, tuple(size), tuple(stride), False, OD())

            def __reduce__(self):
                return (_rebuild_tensor_v2, self.args)

        saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
        sys.modules["torch"], sys.modules["torch._utils"] = torch_mod, utils_mod
        try:
            st = convert.read_safetensors(os.path.join(MODEL, "model.safetensors"))
            state, storages = OD(), []
            for name, t in st.items():
                stor = Storage(str(len(storages)), bytes(t.data))
                storages.append(stor)
                if name.endswith("mlp.c_fc.weight"):
                    # store the transpose and hand the checkpoint a strided view of it
                    rows, cols = t.shape
                    a = t.floats()
                    tr = array_module().array("f")
                    for c in range(cols):
                        tr.extend(a[c::cols])
                    stor.data = tr.tobytes()
                    state[name] = FakeTensor(stor, 0, [rows, cols], [1, rows])
                else:
                    state[name] = FakeTensor(stor, 0, t.shape, contiguous_strides(t.shape))
            wte = state["transformer.wte.weight"]
            state["lm_head.weight"] = FakeTensor(wte.args[0], 0, list(wte.args[2]), list(wte.args[3]))

            class P(pickle.Pickler):
                def persistent_id(self, obj):
                    if isinstance(obj, Storage):
                        return ("storage", FloatStorage, obj.key, "cpu", len(obj.data) // 4, None)
                    return None
            buf = io.BytesIO()
            pickle.dump(0x1950A86A20F9469CFC6C, buf, protocol=2)
            pickle.dump(1001, buf, protocol=2)
            pickle.dump({"little_endian": True}, buf, protocol=2)
            P(buf, protocol=2).dump(state)
            keys = sorted({s.key for s in storages}, key=int)
            pickle.dump(keys, buf, protocol=2)
            for k in keys:
                data = storages[int(k)].data
                buf.write(struct.pack("<q", len(data) // 4) + data)
        finally:
            for k, v in saved.items():
                if v is None:
                    sys.modules.pop(k, None)
                else:
                    sys.modules[k] = v
        with tempfile.TemporaryDirectory() as d:
            for f in ("config.json", "vocab.json", "merges.txt"):
                os.symlink(os.path.join(MODEL, f), os.path.join(d, f))
            with open(os.path.join(d, "pytorch_model.bin"), "wb") as f:
                f.write(buf.getvalue())
            out = os.path.join(d, "legacy.gguf")
            r = run_convert([d, "-o", out], {})
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(read_gguf(out)[0], self.local_tensors)

    def test_bad_sources(self):
        with tempfile.TemporaryDirectory() as d:
            r = run_convert([d, "-o", os.path.join(d, "x.gguf")], {})
            self.assertEqual(r.returncode, 1)
            self.assertIn("config.json", r.stderr)
            self.assertEqual(r.stderr.count("\n"), 1)
            with open(os.path.join(d, "config.json"), "w") as f:
                f.write("{not json")
            r = run_convert([d, "-o", os.path.join(d, "x.gguf")], {})
            self.assertIn("not valid JSON", r.stderr)
            r = run_convert([MODEL, "-o", "/no/such/dir/x.gguf"], {})
            self.assertEqual(r.returncode, 1)
            self.assertIn("does not exist", r.stderr)
            r = run_convert(["./no-such-dir", "-o", os.path.join(d, "x.gguf")], {})
            self.assertEqual(r.returncode, 1)



# ---- hostile and broken inputs (issue 10): one line, exit 1, nothing written -----------------

import checkpoints as cp  # noqa: E402


def st_fixture():
    return cp.split_safetensors(cp.fixture_bytes("model.safetensors"))


def st_with(edit):
    """The fixture's safetensors with edit(header) applied to its header."""
    header, data = st_fixture()
    edit(header)
    return cp.safetensors(header, data)


class Refusals(unittest.TestCase):
    """Each bad input is refused by convert.prepare with a ConvertError naming the problem,
    before anything is written; a few go through the command line too."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.n = 0

    def tearDown(self):
        self.tmp.cleanup()

    def src(self, **files):
        self.n += 1
        return cp.make_src(os.path.join(self.tmp.name, "src%d" % self.n), **files)

    def refused(self, want, **files):
        d = self.src(**files)
        with self.assertRaises(convert.ConvertError) as cm:
            convert.prepare(d, "f32")
        msg = str(cm.exception)
        self.assertIn(want, msg)
        self.assertNotIn("\n", msg)
        return d, msg

    def refused_cli(self, want, **files):
        """Through the command line: exit 1, one line on stderr, no output file, no temporary."""
        d = self.src(**files)
        out_dir = os.path.join(self.tmp.name, "out%d" % self.n)
        os.mkdir(out_dir)
        r = run_convert([d, "-o", os.path.join(out_dir, "x.gguf")], {})
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
        self.assertTrue(r.stderr.startswith("convert.py: error: "), r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        self.assertIn(want, r.stderr)
        self.assertEqual(os.listdir(out_dir), [])
        return r.stderr

    # -- model.safetensors

    def test_safetensors_header_not_an_object(self):
        for h in ([], "x", 3, None, [{"a": 1}]):
            self.refused("not a JSON object", model_safetensors=cp.safetensors(h, b""))
        self.refused_cli("not a JSON object", model_safetensors=cp.safetensors([1, 2], b""))

    def test_safetensors_entry_not_an_object(self):
        self.refused("not an object", model_safetensors=st_with(lambda h: h.update({"transformer.wte.weight": 7})))

    def test_safetensors_missing_or_bad_data_offsets(self):
        name = "transformer.h.0.ln_1.weight"
        self.refused_cli("data_offsets", model_safetensors=st_with(lambda h: h[name].pop("data_offsets")))
        for bad in (None, 5, [1], [0, 1, 2], ["0", "256"], [0.0, 256.0], [True, 256], "0-256"):
            self.refused("data_offsets", model_safetensors=st_with(lambda h: h[name].update(data_offsets=bad)))

    def test_safetensors_offsets_outside_the_file(self):
        name = "transformer.h.0.ln_1.weight"
        header, data = st_fixture()
        n = len(data)
        for offs in ([n - 128, n + 128], [n + 1000, n + 1256], [-256, 0], [256, 0], [2 ** 64, 2 ** 64 + 256]):
            header[name]["data_offsets"] = offs
            self.refused("outside", model_safetensors=cp.safetensors(header, data))

    def test_safetensors_size_not_matching_shape_and_dtype(self):
        name = "transformer.h.0.ln_1.weight"
        self.refused("do not hold", model_safetensors=st_with(lambda h: h[name].update(shape=[65])))
        self.refused("do not hold", model_safetensors=st_with(lambda h: h[name].update(dtype="F16")))
        self.refused("do not hold", model_safetensors=st_with(lambda h: h[name].update(shape=[2 ** 62, 2 ** 62])))

    def test_safetensors_overlapping_tensors(self):
        a, b = "transformer.h.0.ln_1.weight", "transformer.h.0.ln_1.bias"

        def edit(h):
            h[b]["data_offsets"] = list(h[a]["data_offsets"])
        self.refused_cli("overlap", model_safetensors=st_with(edit))

        def edit2(h):  # half way into the neighbour
            x, y = h[a]["data_offsets"]
            h[b]["data_offsets"] = [x + 128, y + 128]
        self.refused("overlap", model_safetensors=st_with(edit2))

    def test_safetensors_bad_dtype_and_shape(self):
        name = "transformer.h.0.ln_1.weight"
        for dt in ("I64", "U8", "", None, 3, ["F32"]):
            self.refused("dtype", model_safetensors=st_with(lambda h: h[name].update(dtype=dt)))
        self.refused("dtype", model_safetensors=st_with(lambda h: h[name].pop("dtype")))
        for shape in (None, "64", 64, [-64], [64.0], [True], [1] * 9, [2 ** 63], [10 ** 400]):
            self.refused("shape", model_safetensors=st_with(lambda h: h[name].update(shape=shape)))

    def test_safetensors_header_length_and_nesting(self):
        blob = cp.fixture_bytes("model.safetensors")
        for n in (len(blob), 2 ** 63, 2 ** 64 - 1):
            self.refused("exceeds the file", model_safetensors=struct.pack("<Q", n) + blob[8:])
        self.refused("too small", model_safetensors=b"\x01\x02")
        self.refused("nested too deeply", model_safetensors=cp.safetensors(None, b"", raw_header=b"[" * 200000))
        self.refused("not valid JSON", model_safetensors=cp.safetensors(None, b"", raw_header=b"\xff{}"))

    def test_tensors_missing_or_of_the_wrong_shape(self):
        self.refused_cli("tensor h.1.ln_2.bias is missing",
                         model_safetensors=st_with(lambda h: h.pop("transformer.h.1.ln_2.bias")))
        cfg = cp.fixture_config()
        cfg["n_positions"] = cfg["n_ctx"] = 64
        self.refused("tensor wpe.weight has shape [128, 64], expected [64, 64]", config_json=cfg)
        cfg = cp.fixture_config()
        cfg["n_layer"] = 3
        self.refused("tensor h.2.ln_1.weight is missing", config_json=cfg)
        cfg["n_layer"] = 1
        self.refused("unexpected tensors", config_json=cfg)

    # -- config.json

    def cfg_refused(self, want, cli=False, **edits):
        cfg = cp.fixture_config()
        for k, v in edits.items():
            if v is KeyError:
                cfg.pop(k, None)
            else:
                cfg[k] = v
        if cli:
            return self.refused_cli(want, config_json=cfg)
        return self.refused(want, config_json=cfg)[1]

    def test_config_not_an_object(self):
        for c in ([], [{"n_layer": 2}], "gpt2", 3, None):
            self.refused("config.json is", config_json=c)
        self.refused_cli("not a JSON object", config_json=[1])
        self.refused("not UTF-8", config_json=b"\xff\xfe{}")
        self.refused("nested too deeply", config_json=b"[" * 100000)
        self.refused("larger than 1024 KB", config_json=b"{" + b" " * (1 << 20) + b"}")

    def test_config_head_count(self):
        self.cfg_refused("n_head = 0 is out of range", cli=True, n_head=0)
        self.cfg_refused("n_head = -2 is out of range", n_head=-2)
        self.cfg_refused("n_embd 64 is not divisible by n_head 3", cli=True, n_head=3)
        self.cfg_refused("n_head = 2048 is out of range", n_head=2048)

    def test_config_sizes_absurd_or_not_integers(self):
        self.cfg_refused("n_layer is 1.5, not an integer", n_layer=1.5)
        self.cfg_refused("n_layer is 2.0, not an integer", n_layer=2.0)
        self.cfg_refused('n_layer is "2", not an integer', n_layer="2")
        self.cfg_refused("n_layer is true, not an integer", n_layer=True)
        self.cfg_refused("lacks a GPT-2 setting: n_layer", n_layer=KeyError)
        self.cfg_refused("n_layer = 100000 is out of range", n_layer=100000)
        self.cfg_refused("n_layer = 0 is out of range", cli=True, n_layer=0)
        self.cfg_refused("n_positions = 1000000000 is out of range", n_positions=10 ** 9)
        self.cfg_refused("n_ctx = 0 is out of range", n_positions=KeyError, n_ctx=0)
        self.cfg_refused("vocab_size = 1000000000000 is out of range", vocab_size=10 ** 12)
        self.cfg_refused("vocab_size = 100 is out of range", vocab_size=100)
        self.cfg_refused("vocab_size = a 133-bit number is out of range", vocab_size=10 ** 40)
        self.cfg_refused("n_embd = 1000000 is out of range", n_embd=10 ** 6)
        self.cfg_refused("n_inner = 0 is out of range", n_inner=0)
        self.cfg_refused("n_inner is", n_inner="256")

    def test_config_epsilon(self):
        for eps in (float("nan"), float("inf"), float("-inf"), 0, 0.0, -1e-5, 1.0, 5, 1e-60, "1e-5", None, True):
            msg = self.cfg_refused("layer_norm_epsilon", layer_norm_epsilon=eps)
            self.assertIn("not a small positive number", msg)
        self.cfg_refused("layer_norm_epsilon NaN", cli=True, layer_norm_epsilon=float("nan"))

    def test_config_token_ids(self):
        self.cfg_refused("eos_token_id = 50257 is out of range", cli=True, eos_token_id=50257)
        self.cfg_refused("eos_token_id = -1 is out of range", eos_token_id=-1)
        self.cfg_refused("bos_token_id = 99999999 is out of range", bos_token_id=99999999)
        self.cfg_refused("eos_token_id is", eos_token_id="50256")

    def test_config_other_models(self):
        self.cfg_refused("model_type is \"llama\"", model_type="llama")
        self.cfg_refused("activation", activation_function=["gelu"])
        self.cfg_refused("reorder_and_upcast_attn", reorder_and_upcast_attn=True)

    # -- vocab.json and merges.txt

    def test_merges_not_utf8(self):
        merges = cp.fixture_bytes("merges.txt")
        self.refused_cli("merges.txt is not UTF-8", merges_txt=merges[:100] + b"\xff\xfe" + merges[100:])
        self.refused("merges.txt: line 2 is not two tokens", merges_txt=b"#version: 0.2\na b c\n")
        self.refused("merges.txt: line 1 is not two tokens", merges_txt=b"abc\n")

    def test_vocab_invalid(self):
        vocab = json.loads(cp.fixture_bytes("vocab.json"))
        self.refused("vocab.json is not UTF-8", vocab_json=b'{"\xff": 0}')
        self.refused_cli("not a JSON object of token: id", vocab_json=["a", "b"])
        bad = dict(vocab, **{"Ġthe": "262"})
        self.refused('bad or duplicate id "262"', vocab_json=bad)
        bad = dict(vocab, **{"Ġthe": 50256})
        self.refused("bad or duplicate id 50256", vocab_json=bad)
        bad = dict(vocab, **{"Ġthe": 50257})
        self.refused("bad or duplicate id 50257", vocab_json=bad)
        bad = dict(vocab)
        bad["\ud800x"] = bad.pop("Ġthe")
        self.refused("not valid Unicode", vocab_json=json.dumps(bad).encode("ascii"))
        bad = dict(vocab)
        del bad["A"]
        self.refused("vocab.json has no token for byte 0x41", vocab_json=bad)
        cfg = cp.fixture_config()
        cfg["vocab_size"] = 50000
        del cfg["eos_token_id"], cfg["bos_token_id"]
        self.refused("vocab.json has 50257 tokens but config.json says vocab_size 50000", config_json=cfg)

    # -- pytorch_model.bin

    def pt_refused(self, want, blob, cli=False):
        if cli:
            return self.refused_cli(want, pytorch_model_bin=blob)
        return self.refused(want, pytorch_model_bin=blob)[1]

    def test_pytorch_fixture_rebuilt_converts(self):
        """The builder's archive converts like the fixture's own (the other tests edit it)."""
        entries, storages, root = cp.fixture_entries()
        d = self.src(pytorch_model_bin=cp.torch_zip(cp.torch_pickle(entries), storages, root))
        _, head, parts = convert.prepare(d, "f32", name="x")
        _, head2, parts2 = convert.prepare(self.src(pytorch_model_bin=cp.fixture_bytes("pytorch_model.bin")),
                                           "f32", name="x")
        self.assertEqual(head, head2)

    def test_pytorch_huge_storage_claims(self):
        """A pickle that claims a 3 GB storage is refused by the size bound, before any read."""
        entries, storages, root = cp.fixture_entries()
        big = [(n, k, t, 750_000_000 if k == "0" else numel, o, s, st) for n, k, t, numel, o, s, st in entries]
        blob = cp.torch_zip(cp.torch_pickle(big), storages, root)
        msg = self.pt_refused("its storages claim", blob, cli=True)
        self.assertIn("claim 3000433152 bytes, more than the 53640208", msg)
        huge = [(n, k, t, 1 << 62 if k == "0" else numel, o, s, st) for n, k, t, numel, o, s, st in entries]
        self.pt_refused("its storages claim", cp.torch_zip(cp.torch_pickle(huge), storages, root))
        huge = [(n, k, t, 1 << 2000 if k == "0" else numel, o, s, st) for n, k, t, numel, o, s, st in entries]
        self.pt_refused("storage 0 has a bad size a 2001-bit number", cp.torch_zip(cp.torch_pickle(huge), storages, root))
        huge = [(n, k, t, c, o, [1 << 63] + s[1:], st) for n, k, t, c, o, s, st in entries]
        self.pt_refused("bad size, stride or offset", cp.torch_zip(cp.torch_pickle(huge), storages, root))
        neg = [(n, k, t, -1 if k == "0" else numel, o, s, st) for n, k, t, numel, o, s, st in entries]
        self.pt_refused("storage 0 has a bad size -1", cp.torch_zip(cp.torch_pickle(neg), storages, root))

    def test_pytorch_zip_bomb(self):
        """A 3.5 MB archive whose storage inflates to 3 GB of zeros is refused without inflating it."""
        entries, storages, root = cp.fixture_entries()
        numel = (3000 << 20) // 4
        big = [(n, k, t, numel if k == "0" else c, o, s, st) for n, k, t, c, o, s, st in entries]
        bomb = cp.bomb_member(3000)
        blob = cp.torch_zip(cp.torch_pickle(big), dict(storages, **{"0": bomb}), root)
        self.assertLess(len(blob), 4 << 20)  # the bomb 3.1 MB, the other storages 0.4 MB
        self.pt_refused("its storages claim", blob, cli=True)
        # the same member behind the fixture's own pickle: only the bytes the storage needs are read
        blob = cp.torch_zip(cp.torch_pickle(entries), dict(storages, **{"0": bomb}), root)
        with zipfile.ZipFile(io.BytesIO(blob)) as z:
            self.assertEqual(z.getinfo(root + "/data/0").file_size, 3000 << 20)
        d = self.src(pytorch_model_bin=blob)
        t = convert.read_checkpoint(d, convert.parse_config(cp.fixture_config()))
        self.assertEqual(bytes(t["transformer.wte.weight"].data), bytes(len(storages["0"])))

    def test_pytorch_declared_sizes(self):
        """The sizes in the zip directory are checked before a member is read."""
        blob = cp.fixture_bytes("pytorch_model.bin")
        z = zipfile.ZipFile(io.BytesIO(blob))
        pkl = [i for i in z.infolist() if i.filename.endswith("data.pkl")][0]
        # data.pkl declaring 3 GB
        self.pt_refused("data.pkl declares 3000000000 bytes", _set_cd_size(blob, pkl.filename, 3_000_000_000))
        # a storage declaring fewer bytes than its tensors need
        name = pkl.filename.replace("data.pkl", "data/1")
        self.pt_refused("storage 1 holds 4 bytes, its tensors need 32768", _set_cd_size(blob, name, 4))

    def test_pytorch_damaged_zip64_records(self):
        """Found by fuzz_convert (seed 100, cases 3665 and 10436): a zip64 locator naming another
        disk made zipfile.is_zipfile raise BadZipFile, a traceback."""
        blob = cp.fixture_bytes("pytorch_model.bin")
        at = blob.rfind(b"PK\x06\x07")
        self.assertGreater(at, 0)
        for off, val in ((4, 1), (16, 7)):
            b = bytearray(blob)
            struct.pack_into("<I", b, at + off, val)
            self.pt_refused("damaged zip archive", bytes(b), cli=off == 4)
        at = blob.rfind(b"PK\x06\x06")
        b = bytearray(blob)
        struct.pack_into("<Q", b, at + 48, 1 << 62)  # the directory's offset
        self.pt_refused("damaged zip archive", bytes(b))

    def test_pytorch_damaged_compressed_members(self):
        """Found by fuzz_convert (seed 60337, case 279): an LZMA member with invalid properties
        raised LZMAError, a traceback. Members compressed by any method zip allows convert as
        stored ones do; damaged ones are refused in one line."""
        blob = cp.fixture_bytes("pytorch_model.bin")
        want = None
        for method in (zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
            buf = io.BytesIO()
            with zipfile.ZipFile(io.BytesIO(blob)) as src, zipfile.ZipFile(buf, "w", method) as dst:
                for info in src.infolist():
                    dst.writestr(info.filename, src.read(info))
            packed = buf.getvalue()
            _, head, _ = convert.prepare(self.src(pytorch_model_bin=packed), "f32", name="x")
            want = want or head
            self.assertEqual(head, want)
            with zipfile.ZipFile(io.BytesIO(packed)) as z:
                pkl = [i for i in z.infolist() if i.filename.endswith("data.pkl")][0]
            # the member's data follows its 30-byte local header, name and extra field
            n, e = struct.unpack_from("<HH", packed, pkl.header_offset + 26)
            at = pkl.header_offset + 30 + n + e
            b = bytearray(packed)
            if method == zipfile.ZIP_LZMA:
                b[at + 4] = 0xFF  # the LZMA properties byte: no valid lc / lp / pb
            else:
                b[at:at + 8] = b"\xff" * 8
            self.pt_refused("damaged zip archive", bytes(b), cli=method == zipfile.ZIP_LZMA)

    def test_pytorch_f16_and_bf16_storages(self):
        """Half and bfloat16 checkpoints convert to the same F32 values (read a million at a time)."""
        entries, storages, root = cp.fixture_entries()
        ref = {n: convert.Tensor("F32", [len(storages[k]) // 4], storages[k]).floats() for n, k, *_ in entries}
        out = {}
        for stype, dtype in (("HalfStorage", "F16"), ("BFloat16Storage", "BF16")):
            conv = {}
            for k, data in storages.items():
                f = convert.Tensor("F32", [len(data) // 4], data).floats()
                if dtype == "F16":
                    conv[k] = struct.pack("<%de" % len(f), *f)
                else:
                    conv[k] = struct.pack("<%dH" % len(f), *[x >> 16 for x in struct.unpack("<%dI" % len(f), data)])
            e = [(n, k, stype) + tuple(x) for n, k, _, *x in entries]
            d = self.src(pytorch_model_bin=cp.torch_zip(cp.torch_pickle(e), conv, root))
            t = convert.read_checkpoint(d, convert.parse_config(cp.fixture_config()))
            out[dtype] = {n: t[n].floats() for n in ref}
        for n, want in ref.items():
            for dtype, tol in (("F16", 1e-3), ("BF16", 1e-2)):
                got = out[dtype][n]
                self.assertEqual(len(got), len(want))
                self.assertTrue(all(abs(a - b) <= tol * max(1.0, abs(b)) for a, b in zip(got[:4096], want[:4096])),
                                (dtype, n))

    def test_pytorch_hostile_pickles(self):
        entries, storages, root = cp.fixture_entries()

        def zipped(pkl):
            return cp.torch_zip(pkl, storages, root)
        # a length field asking for 2**62 bytes: refused by the walk, never allocated
        self.pt_refused("malformed pickle", zipped(b"\x80\x04\x8e" + struct.pack("<Q", 1 << 62) + b"x."), cli=True)
        self.pt_refused("malformed pickle", zipped(b"\x80\x02X" + struct.pack("<I", 0xFFFFFFF0) + b"x."))
        # a memo index that would make the unpickler size its memo to gigabytes
        self.pt_refused("memo index 4294967295 is out of range", zipped(b"\x80\x02Nr\xff\xff\xff\xff."))
        self.pt_refused("malformed pickle", zipped(b"\x80\x02}"))  # no STOP
        self.pt_refused("malformed pickle", zipped(b"\x80\x02\xee."))  # unknown opcode
        self.pt_refused("not a state dict", zipped(b"\x80\x02N."))
        self.pt_refused("unknown persistent id", zipped(b"\x80\x02(X\x01\x00\x00\x00xtQ."))
        self.pt_refused("refusing to load it", zipped(b"\x80\x02cos\nsystem\n(X\x04\x00\x00\x00truetR."))
        # BUILD on a global sets attributes of what find_class returned: never the converter's own
        self.pt_refused("not a state dict", zipped(b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n"
                                                   b"N}X\x0c\x00\x00\x00__defaults__K\x01\x85s\x86b0N."))
        self.assertIsNone(convert._rebuild_tensor.__defaults__)
        self.pt_refused("not a state dict", zipped(b"\x80\x02ccollections\nOrderedDict\n"
                                                   b"N}X\x03\x00\x00\x00fooK\x01s\x86b0N."))
        self.assertFalse(hasattr(convert.OrderedDict, "foo"))
        # a tensor larger than its storage, a negative offset, an overlapping layout
        e = [list(x) for x in entries]
        i = [n for n, x in enumerate(e) if x[0].endswith("h.0.ln_1.bias")][0]
        e[i][5], e[i][6] = [64, 64], [0, 1]
        self.pt_refused("lies outside its storage", zipped(cp.torch_pickle([tuple(x) for x in e])))
        e[i][5], e[i][6] = [64], [-1]
        self.pt_refused("bad size, stride or offset", zipped(cp.torch_pickle([tuple(x) for x in e])))
        e[i][5], e[i][6], e[i][4] = [64], [1], -5
        self.pt_refused("bad size, stride or offset", zipped(cp.torch_pickle([tuple(x) for x in e])))
        e[i][4], e[i][5], e[i][6] = 0, [8, 8], [1, 1]  # 64 elements over 15 of the storage
        self.pt_refused("unsupported memory layout", zipped(cp.torch_pickle([tuple(x) for x in e])))
        e[i][5], e[i][6] = [8, 8], [8, 1]  # a layout we read, but not the shape the config wants
        self.pt_refused("has shape [8, 8], expected [64]", zipped(cp.torch_pickle([tuple(x) for x in e])))
        e[i][1] = "nope"
        self.pt_refused("storage nope is missing", zipped(cp.torch_pickle([tuple(x) for x in e])))
        e[i][2] = "IntStorage"
        self.pt_refused("refusing to load it", zipped(cp.torch_pickle([tuple(x) for x in e])))

    def test_pytorch_wrong_dtype_storage(self):
        entries, storages, root = cp.fixture_entries()
        e = [list(x) for x in entries]
        i = [n for n, x in enumerate(e) if x[0].endswith("h.0.ln_1.bias")][0]
        key = e[i][1]
        e[i][2] = "DoubleStorage"
        self.pt_refused("storage %s holds 256 bytes, its tensors need 512" % key,
                        cp.torch_zip(cp.torch_pickle([tuple(x) for x in e]), storages, root))

    def test_pytorch_legacy_hostile(self):
        entries, storages, root = cp.fixture_entries()
        good = _legacy(entries, storages)
        self.refused("", pytorch_model_bin=good[:len(good) // 2])  # truncated: refused
        # a storage header claiming 2**60 numbers
        blob = bytearray(good)
        at = len(good) - sum(8 + len(v) for v in storages.values())  # the first storage's header
        blob[at:at + 8] = struct.pack("<q", 1 << 60)
        self.refused("inconsistent with the pickle", pytorch_model_bin=bytes(blob))
        big = [(n, k, t, 1 << 60 if k == "0" else c, o, s, st) for n, k, t, c, o, s, st in entries]
        self.refused("its storages claim", pytorch_model_bin=_legacy(big, storages))
        self.refused("neither a zip archive nor a pytorch checkpoint", pytorch_model_bin=b"\x80\x04\x8e" + b"\xff" * 8)
        self.refused("neither a zip archive nor a pytorch checkpoint", pytorch_model_bin=b"")


    def test_fifos_in_the_checkpoint_are_not_read(self):
        """A FIFO would block the reader forever: refused as not a regular file."""
        for name in ("config.json", "vocab.json", "merges.txt", "model.safetensors", "pytorch_model.bin"):
            d = os.path.join(self.tmp.name, "fifo-" + name)
            os.mkdir(d)
            os.mkfifo(os.path.join(d, name))
            for f in cp.FILES:
                if f != name:
                    os.symlink(os.path.join(MODEL, f), os.path.join(d, f))
            with self.assertRaises(convert.ConvertError) as cm:
                convert.prepare(d, "f32")
            self.assertIn("%s is not a regular file" % name, str(cm.exception))

    def test_legacy_storage_list(self):
        entries, storages, root = cp.fixture_entries()
        good = _legacy(entries, storages)
        keys = pickle.dumps(sorted(storages, key=int), 2)
        at = good.index(keys)
        for bad in ([1 << 5000], [None], "0", list(range(1000))):
            blob = good[:at] + pickle.dumps(bad, 2) + good[at + len(keys):]
            self.refused("the storage list is not a list of keys", pytorch_model_bin=blob)


    def test_edge_configs_make_models_the_engine_loads(self):
        """What the checks let through loads: the edges of eps and the token ids, an odd name."""
        gpt2 = os.path.join(ROOT, "build", "gpt2")
        if not os.access(gpt2, os.X_OK):
            self.skipTest("build/gpt2 is not built")
        for edits in ({"layer_norm_epsilon": 0.999, "eos_token_id": 0, "bos_token_id": 50256},
                      {"layer_norm_epsilon": 1e-30, "_name_or_path": "\ud800x\nname", "n_inner": None},
                      {"eos_token_id": None, "bos_token_id": None, "n_positions": None}):
            cfg = cp.fixture_config()
            cfg.update(edits)
            d = self.src(config_json=json.dumps(cfg).encode("ascii"))
            out = os.path.join(self.tmp.name, "edge%d.gguf" % self.n)
            r = run_convert([d, "-o", out], {})
            self.assertEqual(r.returncode, 0, r.stderr)
            r = subprocess.run([gpt2, "tokenize", "-m", out, "hello"], capture_output=True, text=True, timeout=60)
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "31373"), r.stderr)


def _legacy(entries, storages):
    out = [pickle.dumps(convert.LEGACY_MAGIC, 2), pickle.dumps(1001, 2), pickle.dumps({"little_endian": True}, 2),
           cp.torch_pickle(entries, legacy=True)]
    keys = sorted(storages, key=int)
    out.append(pickle.dumps(keys, 2))
    for k in keys:
        out.append(struct.pack("<q", len(storages[k]) // 4) + storages[k])
    return b"".join(out)


def _set_cd_size(blob, name, size):
    """blob with the central directory's uncompressed size of member `name` set to size."""
    b = bytearray(blob)
    enc = name.encode()
    i = b.find(b"PK\x01\x02")
    while i >= 0:
        (nlen,) = struct.unpack_from("<H", b, i + 28)
        if bytes(b[i + 46:i + 46 + nlen]) == enc:
            struct.pack_into("<I", b, i + 24, size)
            return bytes(b)
        i = b.find(b"PK\x01\x02", i + 4)
    raise AssertionError("no member " + name)


class SafeOutput(unittest.TestCase):
    """The output is written to a unique temporary next to it and renamed (issue 10, item 2)."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.d = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def test_planted_symlink_at_the_old_temporary_name(self):
        victim = os.path.join(self.d, "victim")
        with open(victim, "w") as f:
            f.write("precious")
        out = os.path.join(self.d, "x.gguf")
        os.symlink(victim, out + ".tmp")
        r = run_convert([MODEL, "-o", out], {})
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(victim) as f:
            self.assertEqual(f.read(), "precious")
        self.assertTrue(os.path.islink(out + ".tmp"))
        self.assertEqual(sorted(os.listdir(self.d)), ["victim", "x.gguf", "x.gguf.tmp"])

    def test_temporary_names_are_not_followed(self):
        """Even a link at the very name chosen is refused by O_EXCL | O_NOFOLLOW, never followed."""
        victim = os.path.join(self.d, "victim")
        with open(victim, "w") as f:
            f.write("precious")
        out = os.path.join(self.d, "y.gguf")
        names = iter(["aaaaaaaaaaaa", "bbbbbbbbbbbb"])
        os.symlink(victim, os.path.join(self.d, ".y.gguf.aaaaaaaaaaaa.tmp"))
        real = convert.secrets.token_hex
        convert.secrets.token_hex = lambda n: next(names)
        try:
            convert.write_atomically(out, lambda f: f.write(b"new"))
        finally:
            convert.secrets.token_hex = real
        with open(victim) as f:
            self.assertEqual(f.read(), "precious")
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"new")
        self.assertFalse(os.path.exists(os.path.join(self.d, ".y.gguf.bbbbbbbbbbbb.tmp")))

    def test_mode_of_a_normal_new_file(self):
        for umask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
            out = os.path.join(self.d, "m%o.gguf" % umask)
            old = os.umask(umask)
            try:
                convert.write_atomically(out, lambda f: f.write(b"x"))
            finally:
                os.umask(old)
            self.assertEqual(stat.S_IMODE(os.stat(out).st_mode), mode)

    def test_output_that_is_not_a_regular_file(self):
        fifo = os.path.join(self.d, "fifo")
        os.mkfifo(fifo)
        sub = os.path.join(self.d, "dir")
        os.mkdir(sub)
        link = os.path.join(self.d, "link")
        os.symlink("/dev/null", link)
        for out, kind in ((fifo, "a FIFO"), (sub, "a directory"), ("/dev/null", "a device"), (link, "a device")):
            r = run_convert([MODEL, "-o", out], {})
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
            self.assertIn("it exists and is %s" % kind, r.stderr)
        self.assertTrue(stat.S_ISFIFO(os.stat(fifo).st_mode))
        self.assertTrue(stat.S_ISCHR(os.stat("/dev/null").st_mode))
        self.assertTrue(os.path.islink(link))
        self.assertEqual(sorted(os.listdir(self.d)), ["dir", "fifo", "link"])

    def test_failure_removes_the_temporary_and_keeps_the_old_file(self):
        out = os.path.join(self.d, "z.gguf")
        with open(out, "w") as f:
            f.write("old")

        def boom(f):
            f.write(b"partial")
            raise convert.ConvertError("disk on fire")
        with self.assertRaises(convert.ConvertError):
            convert.write_atomically(out, boom)

        def interrupted(f):
            raise KeyboardInterrupt()
        with self.assertRaises(KeyboardInterrupt):
            convert.write_atomically(out, interrupted)
        with open(out) as f:
            self.assertEqual(f.read(), "old")
        self.assertEqual(os.listdir(self.d), ["z.gguf"])

    def test_replaces_an_existing_file_and_a_link_to_one(self):
        target = os.path.join(self.d, "target")
        with open(target, "w") as f:
            f.write("keep")
        link = os.path.join(self.d, "l.gguf")
        os.symlink(target, link)
        convert.write_atomically(link, lambda f: f.write(b"new"))
        self.assertFalse(os.path.islink(link))
        with open(target) as f:
            self.assertEqual(f.read(), "keep")
        convert.write_atomically(target, lambda f: f.write(b"newer"))
        with open(target, "rb") as f:
            self.assertEqual(f.read(), b"newer")


class FuzzHarness(unittest.TestCase):
    def test_a_short_seeded_run(self):
        """tests/fuzz/fuzz_convert.py runs (a few cases; `make fuzz-convert` runs it for longer)."""
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run([sys.executable, os.path.join(HERE, "fuzz", "fuzz_convert.py"), "-n", "12",
                                "--seed", "7", "--artifacts", d], capture_output=True, text=True, timeout=600)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("12 executions", r.stdout)
            self.assertIn("0 findings", r.stdout)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=1).result
    n, bad = result.testsRun, len(result.failures) + len(result.errors)
    print("converter: %d passed, %d failed" % (n - bad, bad))
    sys.exit(1 if bad or n == 0 else 0)
