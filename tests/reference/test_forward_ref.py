#!/usr/bin/python3
"""test_forward_ref.py - Baton's C forward pass against an independent float64 numpy reference.

Part 1 (self-checks of the reference, no Baton binaries needed):
  - GGUF reader: a file written here (v2 and v3, every metadata value type incl. nested
    arrays, a non-default general.alignment) reads back exactly.
  - dequantizers: the vectorised numpy decoders equal a plain per-element decoder written
    from the block definitions, on random blocks, plus hand-computed known values.
  - forward: the whole-sequence causal forward equals a token-by-token decoder with a KV
    cache and per-head loops (a second, differently structured implementation).
Part 2 (Baton): for 2 configs x 18 weight types (incl. q4_1 q5_0 q5_1 iq4_nl iq4_xs q2_k q3_k q5_k q5_k_m q3_k_m), baton-mkmodel writes a model, baton-run
  --exact --greedy generates 32 tokens and dumps the logits of every position; numpy loads
  the same file and checks
  (1) per position, max|c - ref| / max|ref| <= 1e-4,
  (2) Baton's 32 tokens equal numpy's greedy generation from the same prompt.
  Then negative checks show the comparison fails for a perturbed weight, the wrong RoPE
  layout, the wrong GQA head mapping and logits shifted by one position.

Usage: BATON_BUILD=<build dir> /usr/bin/python3 test_forward_ref.py [--self-only]
Exit 0 on pass, 1 on failure.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_qwen2 as ref  # noqa: E402

TOL = 1e-4        # --exact with an f32 KV cache
TOL_KV16 = 1e-3   # --exact with the default f16 KV cache (measured ~2e-4)
PROMPT = [1, 17, 123, 400, 5, 776, 300, 42]
N_GEN = 32
TYPES = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k", "q4_k_m", "q4_1", "q5_0", "q5_1", "iq4_nl", "iq4_xs",
         "q2_k", "q3_k", "q5_k", "q5_k_m", "q3_k_m"]
CONFIGS = {
    "A": ["--embd", "768", "--heads", "12", "--kv-heads", "4", "--ff", "1792",
          "--layers", "3", "--vocab", "1000"],
    "B": ["--embd", "1280", "--heads", "5", "--kv-heads", "1", "--ff", "2304",
          "--layers", "2", "--vocab", "777"],
}

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL: " + msg)
    return cond


# ---------------------------------------------------------------------------
# a small GGUF writer (test-only)
# ---------------------------------------------------------------------------

def _w_str(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def _w_value(vt, v):
    if vt in ref.SCALAR_FORMATS:
        return struct.pack(ref.SCALAR_FORMATS[vt], v)
    if vt == ref.VT_STRING:
        return _w_str(v)
    et, items = v
    out = struct.pack("<IQ", et, len(items))
    for it in items:
        out += _w_value(et, it)
    return out


def write_gguf(path, kvs, tensors, version=3, alignment=None):
    """kvs: list of (key, vt, value) (arrays as (elem_type, items)); tensors: list of
    (name, ne, type_id, raw bytes)."""
    if alignment is not None:
        kvs = kvs + [("general.alignment", ref.VT_UINT32, alignment)]
    align = alignment or 32
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, vt, v in kvs:
        out += _w_str(k) + struct.pack("<I", vt) + _w_value(vt, v)
    off = 0
    offsets = []
    for name, ne, tid, raw in tensors:
        offsets.append(off)
        out += _w_str(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne)
        out += struct.pack("<IQ", tid, off)
        off += (len(raw) + align - 1) // align * align
    out += b"\0" * ((-len(out)) % align)
    for (name, ne, tid, raw), o in zip(tensors, offsets):
        out += raw + b"\0" * ((-len(raw)) % align)
    with open(path, "wb") as f:
        f.write(out)


# ---------------------------------------------------------------------------
# per-element decoders, straight from the block definitions (slow, for checking)
# ---------------------------------------------------------------------------

def _h(b, o):
    return float(np.frombuffer(bytes(b[o:o + 2]), dtype="<f2")[0])


def scalar_block(tid, b):
    """One block (bytes) -> list of floats."""
    if tid == 2:  # q4_0
        d = _h(b, 0)
        return [d * (((b[2 + j] & 15) if j < 16 else (b[2 + j - 16] >> 4)) - 8) for j in range(32)]
    if tid == 8:  # q8_0
        d = _h(b, 0)
        return [d * (b[2 + j] - 256 if b[2 + j] > 127 else b[2 + j]) for j in range(32)]
    if tid == 12:  # q4_K
        d, dmin, s, qs = _h(b, 0), _h(b, 2), b[4:16], b[16:144]
        y = []
        for sub in range(8):
            if sub < 4:
                sc, mn = s[sub] & 63, s[sub + 4] & 63
            else:
                sc = (s[sub + 4] & 0xF) | ((s[sub - 4] >> 6) << 4)
                mn = (s[sub + 4] >> 4) | ((s[sub] >> 6) << 4)
            chunk = sub // 2
            for l in range(32):
                byte = qs[32 * chunk + l]
                q = (byte & 15) if sub % 2 == 0 else (byte >> 4)
                y.append(d * sc * q - dmin * mn)
        return y
    if tid == 14:  # q6_K
        ql, qh, sc, d = b[0:128], b[128:192], b[192:208], _h(b, 208)
        y = [0.0] * 256
        for i in range(256):
            half, r = divmod(i, 128)
            quarter, l = divmod(r, 32)
            lo_byte = ql[64 * half + l + (32 if quarter in (1, 3) else 0)]
            lo = (lo_byte & 15) if quarter < 2 else (lo_byte >> 4)
            hi = (qh[32 * half + l] >> (2 * quarter)) & 3
            s = sc[i // 16]  # one signed scale per 16 elements
            s = s - 256 if s > 127 else s
            y[i] = d * s * ((lo | (hi << 4)) - 32)
        return y
    if tid in (3, 6, 7, 20):  # q4_1 q5_0 q5_1 iq4_nl: 32 elements
        iq4 = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]
        d = _h(b, 0)
        m = _h(b, 2) if tid in (3, 7) else 0.0
        qs = b[{3: 4, 6: 6, 7: 8, 20: 2}[tid]:][:16]
        qh = (b[2] | b[3] << 8 | b[4] << 16 | b[5] << 24) if tid == 6 else \
             (b[4] | b[5] << 8 | b[6] << 16 | b[7] << 24) if tid == 7 else 0
        y = []
        for i in range(32):
            q = (qs[i] & 15) if i < 16 else (qs[i - 16] >> 4)
            q |= ((qh >> i) & 1) << 4
            y.append(d * iq4[q] if tid == 20 else d * (q - 16) if tid == 6 else d * q + m)
        return y
    if tid == 23:  # iq4_xs
        iq4 = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]
        d, sh, sl, qs = _h(b, 0), b[2] | b[3] << 8, b[4:8], b[8:136]
        y = []
        for i in range(256):
            j, l = divmod(i, 32)
            ls = ((sl[j // 2] >> (4 * (j % 2))) & 15) | (((sh >> (2 * j)) & 3) << 4)
            byte = qs[16 * j + (l % 16)]
            y.append(d * (ls - 32) * iq4[(byte & 15) if l < 16 else (byte >> 4)])
        return y
    if tid == 10:  # q2_K: scales[16], qs[64], d, dmin; element 128h + 32k + l: bits 2k of qs[32h + l]
        sc, qs, d, dmin = b[0:16], b[16:80], _h(b, 80), _h(b, 82)
        y = []
        for i in range(256):
            h, r = divmod(i, 128)
            k, l = divmod(r, 32)
            q = (qs[32 * h + l] >> (2 * k)) & 3
            y.append(d * (sc[i // 16] & 15) * q - dmin * (sc[i // 16] >> 4))
        return y
    if tid == 11:  # q3_K: hmask[32], qs[64], scales[12], d
        hm, qs, S, d = b[0:32], b[32:96], b[96:108], _h(b, 108)
        y = []
        for i in range(256):
            h, r = divmod(i, 128)
            k, l = divmod(r, 32)
            q = ((qs[32 * h + l] >> (2 * k)) & 3) - (0 if (hm[i % 32] >> (i // 32)) & 1 else 4)
            sb = i // 16
            c = (S[sb] & 15 if sb < 8 else S[sb - 8] >> 4) | (((S[8 + sb % 4] >> (2 * (sb // 4))) & 3) << 4)
            y.append(d * (c - 32) * q)
        return y
    if tid == 13:  # q5_K: d, dmin, scales[12] (q4_K packing), qh[32], qs[128]
        d, dmin, s, qh, qs = _h(b, 0), _h(b, 2), b[4:16], b[16:48], b[48:176]
        y = []
        for sub in range(8):
            if sub < 4:
                sc, mn = s[sub] & 63, s[sub + 4] & 63
            else:
                sc = (s[sub + 4] & 0xF) | ((s[sub - 4] >> 6) << 4)
                mn = (s[sub + 4] >> 4) | ((s[sub] >> 6) << 4)
            for l in range(32):
                byte = qs[32 * (sub // 2) + l]
                q = ((byte & 15) if sub % 2 == 0 else (byte >> 4)) + 16 * ((qh[l] >> sub) & 1)
                y.append(d * sc * q - dmin * mn)
        return y
    raise ValueError(tid)


def random_blocks(rng, tid, nb):
    """Random blocks with finite, modest f16 scale fields."""
    _, be, bb, _ = ref.type_row(tid)
    raw = rng.integers(0, 256, size=(nb, bb), dtype=np.uint8)
    pos = {2: [0], 8: [0], 12: [0, 2], 14: [208], 3: [0, 2], 6: [0], 7: [0, 2], 20: [0], 23: [0],
           10: [80, 82], 11: [108], 13: [0, 2]}[tid]
    for p in pos:
        raw[:, p:p + 2] = np.frombuffer(
            rng.uniform(-0.1, 0.1, nb).astype("<f2").tobytes(), dtype=np.uint8).reshape(nb, 2)
    return raw.reshape(-1)


# ---------------------------------------------------------------------------
# a second forward implementation: token by token, KV cache, per-head loops
# ---------------------------------------------------------------------------

def forward_incremental(m, tokens):
    hd, nh, nkv = m.head_dim, m.n_head, m.n_kv
    group = nh // nkv
    cache = [([], []) for _ in m.layers]
    rows = []
    for pos, t in enumerate(tokens):
        x = m.tok_embd[t].copy()
        for li, L in enumerate(m.layers):
            h = x / np.sqrt(np.dot(x, x) / len(x) + m.eps) * L["attn_norm"]
            q = L["wq"] @ h + L["bq"]
            k = L["wk"] @ h + L["bk"]
            v = L["wv"] @ h + L["bv"]
            for vec, heads in ((q, nh), (k, nkv)):
                for j in range(heads):
                    for i in range(hd // 2):
                        th = pos * m.rope_base ** (-2.0 * i / hd)
                        a, b = vec[j * hd + i], vec[j * hd + i + hd // 2]
                        vec[j * hd + i] = a * np.cos(th) - b * np.sin(th)
                        vec[j * hd + i + hd // 2] = a * np.sin(th) + b * np.cos(th)
            cache[li][0].append(k)
            cache[li][1].append(v)
            att = np.zeros(nh * hd)
            for j in range(nh):
                kv = j // group
                qs = q[j * hd:(j + 1) * hd]
                sc = np.array([np.dot(qs, kk[kv * hd:(kv + 1) * hd]) for kk in cache[li][0]])
                sc = sc / np.sqrt(hd)
                w = np.exp(sc - sc.max())
                w /= w.sum()
                for s, vv in enumerate(cache[li][1]):
                    att[j * hd:(j + 1) * hd] += w[s] * vv[kv * hd:(kv + 1) * hd]
            x = x + L["wo"] @ att
            h = x / np.sqrt(np.dot(x, x) / len(x) + m.eps) * L["ffn_norm"]
            g = L["gate"] @ h
            x = x + L["down"] @ (g / (1 + np.exp(-g)) * (L["up"] @ h))
        x = x / np.sqrt(np.dot(x, x) / len(x) + m.eps) * m.out_norm
        rows.append(m.output @ x)
    return np.array(rows)


def tiny_model_file(path, rng, n_embd=24, n_head=6, n_kv=2, n_ff=40, n_layer=2, n_vocab=50,
                    wtype=0):
    def t(name, shape, scale=0.3, tid=0):
        a = (rng.standard_normal(shape) * scale).astype("<f4")
        if tid == 1:
            raw = a.astype("<f2").tobytes()
        else:
            raw = a.tobytes()
        return (name, list(reversed(shape)), tid, raw)
    hd = n_embd // n_head
    ts = [t("token_embd.weight", (n_vocab, n_embd), 1.0)]
    for i in range(n_layer):
        b = "blk.%d." % i
        ts += [t(b + "attn_norm.weight", (n_embd,), 1.0),
               t(b + "attn_q.weight", (n_head * hd, n_embd), tid=wtype),
               t(b + "attn_q.bias", (n_head * hd,)),
               t(b + "attn_k.weight", (n_kv * hd, n_embd), tid=wtype),
               t(b + "attn_k.bias", (n_kv * hd,)),
               t(b + "attn_v.weight", (n_kv * hd, n_embd), tid=wtype),
               t(b + "attn_v.bias", (n_kv * hd,)),
               t(b + "attn_output.weight", (n_embd, n_head * hd), tid=wtype),
               t(b + "ffn_norm.weight", (n_embd,), 1.0),
               t(b + "ffn_gate.weight", (n_ff, n_embd), tid=wtype),
               t(b + "ffn_up.weight", (n_ff, n_embd), tid=wtype),
               t(b + "ffn_down.weight", (n_embd, n_ff), tid=wtype)]
    ts += [t("output_norm.weight", (n_embd,), 1.0), t("output.weight", (n_vocab, n_embd))]
    kvs = [("general.architecture", ref.VT_STRING, "qwen2"),
           ("qwen2.block_count", ref.VT_UINT32, n_layer),
           ("qwen2.embedding_length", ref.VT_UINT32, n_embd),
           ("qwen2.feed_forward_length", ref.VT_UINT32, n_ff),
           ("qwen2.attention.head_count", ref.VT_UINT32, n_head),
           ("qwen2.attention.head_count_kv", ref.VT_UINT32, n_kv),
           ("qwen2.rope.freq_base", ref.VT_FLOAT32, 10000.0),
           ("qwen2.attention.layer_norm_rms_epsilon", ref.VT_FLOAT32, 1e-5)]
    write_gguf(path, kvs, ts)


def self_checks(tmp):
    rng = np.random.default_rng(1234)
    # --- GGUF reader: every value type, nested arrays, alignment, v2 and v3
    kvs = [("u8", ref.VT_UINT8, 200), ("i8", ref.VT_INT8, -100), ("u16", ref.VT_UINT16, 65000),
           ("i16", ref.VT_INT16, -30000), ("u32", ref.VT_UINT32, 4000000000),
           ("i32", ref.VT_INT32, -2000000000), ("f32", ref.VT_FLOAT32, 0.5),
           ("b", ref.VT_BOOL, True), ("s", ref.VT_STRING, "h\u00e9llo"),
           ("u64", ref.VT_UINT64, 2 ** 63 + 5), ("i64", ref.VT_INT64, -2 ** 62),
           ("f64", ref.VT_FLOAT64, 1e-300),
           ("ai32", ref.VT_ARRAY, (ref.VT_INT32, [1, -2, 3])),
           ("astr", ref.VT_ARRAY, (ref.VT_STRING, ["a", "", "xyz"])),
           ("anest", ref.VT_ARRAY, (ref.VT_ARRAY, [(ref.VT_UINT8, [1, 2]), (ref.VT_STRING, ["q"]),
                                                    (ref.VT_ARRAY, [(ref.VT_FLOAT64, [2.5])])]))]
    data = np.arange(64 * 3, dtype="<f4")
    for ver, al in ((3, 64), (2, None), (3, 256)):
        p = os.path.join(tmp, "kv%d.gguf" % ver)
        write_gguf(p, kvs, [("a", [64, 3], 0, data.tobytes()),
                            ("b", [32], 1, np.arange(32, dtype="<f2").tobytes())], ver, al)
        g = ref.GGUFFile(p)
        md = g.metadata
        ok = (g.version == ver and md["u8"] == 200 and md["i8"] == -100 and md["u16"] == 65000
              and md["i16"] == -30000 and md["u32"] == 4000000000 and md["i32"] == -2000000000
              and md["f32"] == 0.5 and md["b"] is True and md["s"] == "h\u00e9llo"
              and md["u64"] == 2 ** 63 + 5 and md["i64"] == -2 ** 62 and md["f64"] == 1e-300
              and list(md["ai32"]) == [1, -2, 3] and md["astr"] == ["a", "", "xyz"]
              and list(md["anest"][0]) == [1, 2] and md["anest"][1] == ["q"]
              and list(md["anest"][2][0]) == [2.5]
              and g.alignment == (al or 32) and g.data_offset % (al or 32) == 0
              and np.array_equal(g.tensor("a"), data.reshape(3, 64))
              and np.array_equal(g.tensor("b"), np.arange(32)))
        check(ok, "GGUF v%d alignment %s: metadata/tensors did not read back" % (ver, al))
    # truncated file -> GGUFError, not a crash
    p = os.path.join(tmp, "trunc.gguf")
    with open(os.path.join(tmp, "kv3.gguf"), "rb") as f:
        whole = f.read()
    for cut in (3, 20, 100, len(whole) - 200):  # the last cuts into tensor data
        with open(p, "wb") as f:
            f.write(whole[:cut])
        try:
            ref.GGUFFile(p)
            check(False, "truncated GGUF (%d bytes) was accepted" % cut)
        except ref.GGUFError:
            pass
    print("self-check: GGUF reader v2/v3, 13 value types, nested arrays, alignment 32/64/256, truncation: ok")

    # --- dequantizers vs per-element decoding
    for tid in (2, 8, 12, 14, 3, 6, 7, 20, 23, 10, 11, 13):
        nb = 6
        raw = random_blocks(rng, tid, nb)
        _, be, bb, _ = ref.type_row(tid)
        vec = ref.dequantize(tid, raw, nb * be)
        slow = np.concatenate([scalar_block(tid, raw[i * bb:(i + 1) * bb]) for i in range(nb)])
        check(np.array_equal(vec, slow), "dequant %s: vectorised != per-element (max diff %g)"
              % (ref.type_row(tid)[0], np.max(np.abs(vec - slow))))
    # hand-computed values
    q40 = np.frombuffer(np.float16(0.5).tobytes() + bytes([0x1F] + [0x80] * 15), dtype=np.uint8)
    y = ref.dequantize(2, q40, 32)
    check(y[0] == 0.5 * (15 - 8) and y[16] == 0.5 * (1 - 8) and y[1] == 0.5 * (0 - 8)
          and y[17] == 0.5 * (8 - 8), "q4_0 known values wrong: %s" % y[[0, 1, 16, 17]])
    q80 = np.frombuffer(np.float16(0.25).tobytes() + bytes([0xFF, 0x7F] + [0] * 30), dtype=np.uint8)
    y = ref.dequantize(8, q80, 32)
    check(y[0] == -0.25 and y[1] == 0.25 * 127, "q8_0 known values wrong")
    # q4_K: scale 5 / min 3 for sub-block 5 only (bytes 9 and 1/5 top bits), all quants 7
    blk = bytearray(144)
    blk[0:2] = np.float16(1.0).tobytes()
    blk[2:4] = np.float16(0.5).tobytes()
    # sub-block 5: sc = (s[9] & 15) | (s[1] >> 6) << 4 = 5 + 16 = 21; m = (s[9] >> 4) | (s[5] >> 6) << 4 = 3 + 32
    blk[4 + 9] = 0x35
    blk[4 + 1] = 0x40
    blk[4 + 5] = 0x80
    blk[16:144] = bytes([0x77] * 128)
    y = ref.dequantize(12, np.frombuffer(bytes(blk), dtype=np.uint8), 256)
    # sub-block 1 (s[1] & 63 = 0, s[5] & 63 = 0) -> 0; sub-block 5 -> 21*7 - 0.5*35
    check(np.all(y[160:192] == 21 * 7 - 0.5 * 35) and np.all(y[32:64] == 0) and np.all(y[0:32] == 0),
          "q4_K known values wrong")
    # q6_K: element 200 (half 1, r 72 -> quarter 2, l 8): ql[64+8] high nibble, qh[32+8] bits 4-5
    blk = bytearray(210)
    blk[208:210] = np.float16(0.125).tobytes()
    blk[64 + 8] = 0xA0            # high nibble 10
    blk[128 + 32 + 8] = 0x20      # bits 4-5 = 2 -> q = 10 | 32 = 42
    blk[192 + 8 + 72 // 16] = 0xFD  # scale -3
    y = ref.dequantize(14, np.frombuffer(bytes(blk), dtype=np.uint8), 256)
    check(y[200] == 0.125 * -3 * (42 - 32), "q6_K known value wrong: %g" % y[200])
    print("self-check: q4_0/q8_0/q4_K/q6_K vectorised == per-element on random blocks; known values: ok")

    # --- forward: whole sequence == token by token; GQA and RoPE variants differ
    p = os.path.join(tmp, "tiny.gguf")
    tiny_model_file(p, rng)
    m = ref.Qwen2Ref(ref.GGUFFile(p))
    toks = [3, 7, 7, 0, 49, 12, 5]
    a = m.forward(toks)
    b = forward_incremental(m, toks)
    err = np.max(np.abs(a - b)) / np.max(np.abs(b))
    check(err < 1e-12, "whole-sequence forward != incremental forward (rel err %g)" % err)
    check(np.allclose(m.forward(toks[:4]), a[:4], rtol=0, atol=1e-12),
          "forward is not causal: a prefix gives other logits")
    gen = m.generate(toks[:3], 5)
    ag = m.forward(toks[:3] + gen)
    check(all(gen[i] == int(np.argmax(ag[2 + i])) for i in range(5)), "generate() is not greedy")
    m.rope_layout = "normal"
    check(np.max(np.abs(m.forward(toks) - a)) > 1e-3, "RoPE layout has no effect on tiny model")
    m.rope_layout = "neox"
    m.gqa_map = "modulo"
    check(np.max(np.abs(m.forward(toks) - a)) > 1e-3, "GQA mapping has no effect on tiny model")
    m.gqa_map = "block"
    print("self-check: tiny model (6 heads / 2 kv heads, hd 4) whole-sequence vs incremental rel err %.2e: ok" % err)


# ---------------------------------------------------------------------------
# Baton comparison
# ---------------------------------------------------------------------------

def rel_errors(c, r):
    """per-row max|c - r| / max|r|."""
    return np.max(np.abs(c - r), axis=1) / np.max(np.abs(r), axis=1)


def make_model(build, tmp, cfg, typ):
    """baton-mkmodel -> path of the new model file."""
    model = os.path.join(tmp, "m_%s_%s.gguf" % (cfg, typ))
    r = subprocess.run([os.path.join(build, "tools", "baton-mkmodel"), "--preset", "tiny",
                        "--type", typ, "--seed", "7"] + CONFIGS[cfg] + ["-o", model],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("baton-mkmodel %s %s failed: %s" % (cfg, typ, r.stderr.strip()))
    return model


def run_baton(build, model, kv, n_vocab):
    """baton-run --exact --greedy with the given KV cache type -> (generated ids,
    logits (rows, n_vocab) float64, the JSON object)."""
    lpath = model + ".%s.logits" % kv
    r = subprocess.run([os.path.join(build, "tools", "baton-run"), "--model", model,
                        "--tokens", ",".join(map(str, PROMPT)), "--max-tokens", str(N_GEN),
                        "--greedy", "--json", "--exact", "--kv", kv, "--logits-out", lpath],
                       capture_output=True, text=True, timeout=60)  # normally < 1 s
    if r.returncode != 0:
        raise RuntimeError("baton-run %s --kv %s failed: %s" % (model, kv, r.stderr.strip()))
    out = json.loads(r.stdout.strip().splitlines()[-1])
    toks = [int(t) for t in out["tokens"]]
    c = np.fromfile(lpath, dtype="<f4").astype(np.float64)
    os.unlink(lpath)
    rows = len(PROMPT) + len(toks) - 1
    if c.size != rows * n_vocab:
        raise RuntimeError("baton-run %s --kv %s: logits file has %d floats, expected %d x %d"
                           % (model, kv, c.size, rows, n_vocab))
    return toks, c.reshape(rows, n_vocab), out


def compare_model(build, tmp, cfg, typ):
    """Generate one model, compare baton-run to the reference; a result dict."""
    tag = "%s/%s" % (cfg, typ)
    model = make_model(build, tmp, cfg, typ)
    m = ref.Qwen2Ref(ref.GGUFFile(model))
    # (1) strict: f32 KV cache, so the only differences are f32 rounding
    toks, c, out = run_baton(build, model, "f32", m.n_vocab)
    check(out.get("n_prompt") == len(PROMPT), "%s: n_prompt %s" % (tag, out.get("n_prompt")))
    check(len(toks) == N_GEN, "%s: baton-run generated %d tokens, expected %d" % (tag, len(toks), N_GEN))
    seq = PROMPT + toks[:-1]
    r = m.forward(seq)
    errs = rel_errors(c, r)
    worst = float(np.max(errs))
    worst_pos = int(np.argmax(errs))
    check(worst <= TOL, "%s: logits rel err %.3e at position %d > %g (--kv f32)"
          % (tag, worst, worst_pos, TOL))
    # default f16 KV cache: K and V rounded to half precision (relative 2^-11), so a
    # looser bound, on the sequence that run generated
    toks16, c16, _ = run_baton(build, model, "f16", m.n_vocab)
    seq16 = PROMPT + toks16[:-1]
    r16 = r if seq16 == seq else m.forward(seq16)
    worst16 = float(np.max(rel_errors(c16, r16)))
    check(worst16 <= TOL_KV16, "%s: logits rel err %.3e > %g with --kv f16" % (tag, worst16, TOL_KV16))
    # (2) greedy: numpy's greedy sequence from PROMPT equals Baton's iff at every step
    # Baton's token is the reference argmax given the (identical) prefix - by induction,
    # since the causal forward of a prefix does not depend on later tokens.
    ref_next = np.argmax(r[len(PROMPT) - 1:], axis=1)  # argmax takes the lowest id on ties
    mism = [i for i in range(len(toks)) if toks[i] != int(ref_next[i])]
    if mism:
        i = mism[0]
        row = r[len(PROMPT) - 1 + i]
        gap = (row[ref_next[i]] - row[toks[i]]) / np.max(np.abs(row))
        check(False, "%s/%s: greedy token %d: baton %d, numpy %d (numpy margin %.2e of max|logit|)"
              % (cfg, typ, i, toks[i], ref_next[i], gap))
    margins = []
    for i in range(len(toks)):
        row = np.sort(r[len(PROMPT) - 1 + i])
        margins.append((row[-1] - row[-2]) / np.max(np.abs(row)))
    return {"cfg": cfg, "type": typ, "worst": worst, "pos": worst_pos, "greedy_ok": not mism,
            "worst16": worst16, "same16": toks16 == toks,
            "min_margin": float(min(margins)), "path": model, "m": m, "seq": seq, "c": c, "r": r, "toks": toks}


TOL_YARN = 1e-5
YARN_ORIG, YARN_FACTOR = 32, 4.0


def yarn_case(build, tmp):
    """YaRN RoPE: a model written with qwen2.rope.scaling.* keys (original context 32,
    factor 4), a prompt of 3 x 32 tokens; baton-run --exact --kv f32 against the
    reference at every position, and the same comparison must fail without YaRN or
    without its attention temperature."""
    model = os.path.join(tmp, "y_yarn.gguf")
    r = subprocess.run([os.path.join(build, "tools", "baton-mkmodel"), "--preset", "tiny", "--type", "f32",
                        "--seed", "11", "--layers", "2", "--ctx", "256", "--vocab", "600",
                        "--rope-scaling", "yarn", "--rope-scale", str(YARN_FACTOR),
                        "--yarn-orig-ctx", str(YARN_ORIG), "-o", model],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("baton-mkmodel (yarn) failed: %s" % r.stderr.strip())
    m = ref.Qwen2Ref(ref.GGUFFile(model))
    check(m.yarn == (YARN_FACTOR, YARN_ORIG), "yarn: the reference read %s from the keys" % (m.yarn,))
    rng = np.random.default_rng(5)
    prompt = [int(t) for t in rng.integers(1, m.n_vocab, 3 * YARN_ORIG)]
    lpath = model + ".logits"
    r = subprocess.run([os.path.join(build, "tools", "baton-run"), "--model", model,
                        "--tokens", ",".join(map(str, prompt)), "--max-tokens", "1", "--greedy", "--json",
                        "--exact", "--kv", "f32", "--logits-out", lpath],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError("baton-run (yarn) failed: %s" % r.stderr.strip())
    c = np.fromfile(lpath, dtype="<f4").astype(np.float64).reshape(len(prompt), m.n_vocab)
    ref_l = m.forward(prompt)
    errs = rel_errors(c, ref_l)
    worst = float(np.max(errs))
    check(worst <= TOL_YARN, "yarn: logits rel err %.3e at position %d > %g" % (worst, int(np.argmax(errs)), TOL_YARN))
    # the comparison must see YaRN: plain RoPE, and YaRN without mscale, both fail
    m.yarn = None
    e_plain = float(np.max(rel_errors(c, m.forward(prompt))))
    m.yarn = (YARN_FACTOR, YARN_ORIG)
    saved = ref.yarn_inv_freq
    ref.yarn_inv_freq = lambda *a, **k: (saved(*a, **k)[0], 1.0)
    try:
        e_nomscale = float(np.max(rel_errors(c, m.forward(prompt))))
    finally:
        ref.yarn_inv_freq = saved
    check(e_plain > 100 * TOL_YARN, "yarn: plain RoPE still passes (err %.3e)" % e_plain)
    check(e_nomscale > 100 * TOL_YARN, "yarn: YaRN without mscale still passes (err %.3e)" % e_nomscale)
    print("yarn (factor %g, original context %d, %d-token prompt, --exact --kv f32): max rel err %.3e over %d "
          "positions (bound %g); plain RoPE gives %.3e, YaRN without mscale %.3e"
          % (YARN_FACTOR, YARN_ORIG, len(prompt), worst, len(prompt), TOL_YARN, e_plain, e_nomscale))


def negative_checks(res):
    """The comparison must fail for a broken forward pass."""
    m, seq, c, r = res["m"], res["seq"], res["c"], res["r"]
    base = np.max(rel_errors(c, r))
    tag = "%s/%s" % (res["cfg"], res["type"])
    # 1. one single weight off by its tensor's largest magnitude (a 2% change of one
    #    weight moves these logits by only ~5e-5; a change like this by ~3e-3)
    L = m.layers[0]
    w = L["wk"]
    saved = w[5, 7]
    w[5, 7] += np.max(np.abs(w))
    e1 = np.max(rel_errors(c, m.forward(seq)))
    w[5, 7] = saved
    # 2. RoPE in the interleaved (GPT-J) layout instead of NeoX
    m.rope_layout = "normal"
    e2 = np.max(rel_errors(c, m.forward(seq)))
    m.rope_layout = "neox"
    # 3. GQA mapping h % n_kv instead of h // (n_head / n_kv)
    m.gqa_map = "modulo"
    e3 = np.max(rel_errors(c, m.forward(seq)))
    m.gqa_map = "block"
    # 4. logits shifted by one position
    e4 = np.max(rel_errors(c[1:], r[:-1]))
    # 5. a plausible decoder bug: Q4_K sub-blocks 4..7 with scale and min nibbles swapped
    good = ref.TENSOR_TYPES[12]

    def bad_q4_k(raw):
        b = raw.reshape(-1, 144).copy()
        s = b[:, 12:16]
        b[:, 12:16] = ((s & 15) << 4) | (s >> 4)
        return good[3](b.reshape(-1))
    ref.TENSOR_TYPES[12] = good[:3] + (bad_q4_k,)
    try:
        e5 = np.max(rel_errors(c, ref.Qwen2Ref(ref.GGUFFile(res["path"])).forward(seq)))
    finally:
        ref.TENSOR_TYPES[12] = good
    # numpy's own greedy loop (recomputing everything each step) gives Baton's tokens.
    # The reference BLAS is slow, so 4 steps by default (all 32 with BATON_REF_FULL=1);
    # the argmax check in compare_model already covers all 32 steps by induction.
    n = N_GEN if os.environ.get("BATON_REF_FULL") == "1" else 4
    gen = m.generate(PROMPT, n)
    check(gen == res["toks"][:n], "%s: numpy generate() %s != baton %s" % (tag, gen, res["toks"][:n]))
    print("numpy generate() (full recompute per step, %d steps) on %s: %s baton's tokens"
          % (n, tag, "equals" if gen == res["toks"][:n] else "DIFFERS FROM"))
    check(base <= TOL, "negative checks: baseline %s does not pass" % tag)
    for name, e in (("one weight of blk.0.attn_k +max|W|", e1), ("RoPE interleaved layout", e2),
                    ("GQA head mapping h % n_kv", e3), ("logits shifted one position", e4),
                    ("Q4_K scale/min nibbles swapped", e5)):
        ok = e > TOL
        check(ok, "negative check '%s' on %s: comparison still passes (err %.3e)" % (name, tag, e))
        print("negative check %-36s on %s: rel err %.3e -> %s"
              % (name, tag, e, "detected" if ok else "NOT DETECTED"))


def main():
    t0 = time.time()
    self_only = "--self-only" in sys.argv
    with tempfile.TemporaryDirectory(prefix="baton_fwdref_") as tmp:
        self_checks(tmp)
        if self_only:
            print("(--self-only: Baton comparison skipped)")
        else:
            build = os.environ.get("BATON_BUILD")
            missing = [b for b in ("baton-mkmodel", "baton-run")
                       if build and not os.access(os.path.join(build, "tools", b), os.X_OK)]
            if not build:
                check(False, "BATON_BUILD is not set")
            elif missing:
                check(False, "not built in %s/tools: %s" % (build, ", ".join(missing)))
            else:
                # debugging subsets: BATON_REF_CONFIGS=A BATON_REF_TYPES=q4_k_m,f32
                cfgs = os.environ.get("BATON_REF_CONFIGS", ",".join(CONFIGS)).split(",")
                types = os.environ.get("BATON_REF_TYPES", ",".join(TYPES)).split(",")
                subset = cfgs != list(CONFIGS) or types != TYPES
                results = []
                # under the sanitizers (5-10x slower) the second configuration runs the
                # first 8 types only; the release build runs every pair
                sanitized = os.environ.get("BATON_SANITIZE") == "ON" and not subset
                for cfg in cfgs:
                    for typ in types:
                        if sanitized and cfg != cfgs[0] and TYPES.index(typ) >= 8:
                            continue
                        try:
                            res = compare_model(build, tmp, cfg, typ)
                        except (RuntimeError, subprocess.TimeoutExpired, ValueError,
                                ref.GGUFError, ref.RefError) as e:
                            check(False, str(e))
                            continue
                        if res:
                            results.append(res)
                            if not (cfg == "A" and typ == "q4_k_m"):
                                for k in ("m", "c", "r"):
                                    res.pop(k)
                        for f in os.listdir(tmp):  # keep only A/q4_k_m for the negative checks
                            if f.startswith(("m_", "l_")) and f != "m_A_q4_k_m.gguf":
                                os.unlink(os.path.join(tmp, f))
                print("\n%-6s %-8s %-15s %-6s %-7s %-10s %-16s %s"
                      % ("config", "type", "rel err kv f32", "at pos", "greedy", "top-2 gap",
                         "rel err kv f16", "kv f16 tokens"))
                for res in results:
                    print("%-6s %-8s %-15.3e %-6d %-7s %-10.2e %-16.3e %s"
                          % (res["cfg"], res["type"], res["worst"], res["pos"],
                             "same" if res["greedy_ok"] else "DIFF", res["min_margin"],
                             res["worst16"], "same" if res["same16"] else "differ"))
                if not os.environ.get("BATON_REF_TYPES") or os.environ.get("BATON_REF_YARN") == "1":
                    try:
                        yarn_case(build, tmp)
                    except (RuntimeError, subprocess.TimeoutExpired, ValueError,
                            ref.GGUFError, ref.RefError) as e:
                        check(False, str(e))
                neg = [x for x in results if x["cfg"] == "A" and x["type"] == "q4_k_m" and "m" in x]
                if neg:
                    negative_checks(neg[0])
                elif subset:
                    print("negative checks skipped: the subset has no A/q4_k_m")
                else:
                    check(False, "no A/q4_k_m result for the negative checks")
    print("\n%s in %.1f s" % ("FAIL (%d problems)" % len(failures) if failures else "PASS",
                              time.time() - t0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
