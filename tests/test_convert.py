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


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=1).result
    n, bad = result.testsRun, len(result.failures) + len(result.errors)
    print("converter: %d passed, %d failed" % (n - bad, bad))
    sys.exit(1 if bad or n == 0 else 0)
