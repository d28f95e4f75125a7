#!/usr/bin/python3
"""ref_qwen2.py - an independent float64 reference of the Qwen2 forward pass.

Written from the GGUF specification and the Qwen2 architecture description, not
from Baton's C code, so that tests can hold Baton's forward pass against it.
Needs only Python 3 and numpy.

Library:
    g = GGUFFile("model.gguf")          # header v2/v3, metadata, tensor table
    g.metadata["qwen2.block_count"]      # metadata values as Python/numpy values
    w = g.tensor("blk.0.attn_q.weight")  # float64, numpy shape = reversed GGUF ne
    m = Qwen2Ref(g)                      # dequantizes every weight once (float64)
    logits = m.forward([1, 2, 3])        # (T, n_vocab) float64, causal, all at once
    ids = m.generate([1, 2, 3], 16)      # greedy, recomputing the whole sequence

CLI:
    ref_qwen2.py info MODEL.gguf
    ref_qwen2.py generate MODEL.gguf --tokens 1,2,3 [--max-tokens N]
    ref_qwen2.py forward MODEL.gguf --tokens 1,2,3 --logits-out FILE   (float32 rows)
Errors: GGUFError / RefError with one message; the CLI prints "ref_qwen2: ..." and exits 1.
"""
import math
import struct
import sys

import numpy as np


class GGUFError(Exception):
    """A malformed or unsupported GGUF file (one-line message)."""


class RefError(Exception):
    """A model the reference cannot run (missing key/tensor, bad shape, bad token)."""


# ---------------------------------------------------------------------------
# GGUF container
# ---------------------------------------------------------------------------

GGUF_MAGIC = b"GGUF"

# Metadata value types: id -> (name, struct format or None for non-scalars).
VT_UINT8, VT_INT8, VT_UINT16, VT_INT16, VT_UINT32, VT_INT32 = 0, 1, 2, 3, 4, 5
VT_FLOAT32, VT_BOOL, VT_STRING, VT_ARRAY = 6, 7, 8, 9
VT_UINT64, VT_INT64, VT_FLOAT64 = 10, 11, 12

SCALAR_FORMATS = {
    VT_UINT8: "<B", VT_INT8: "<b", VT_UINT16: "<H", VT_INT16: "<h",
    VT_UINT32: "<I", VT_INT32: "<i", VT_FLOAT32: "<f", VT_BOOL: "<?",
    VT_UINT64: "<Q", VT_INT64: "<q", VT_FLOAT64: "<d",
}
SCALAR_DTYPES = {
    VT_UINT8: "<u1", VT_INT8: "<i1", VT_UINT16: "<u2", VT_INT16: "<i2",
    VT_UINT32: "<u4", VT_INT32: "<i4", VT_FLOAT32: "<f4", VT_BOOL: "<u1",
    VT_UINT64: "<u8", VT_INT64: "<i8", VT_FLOAT64: "<f8",
}


class TensorInfo:
    """One tensor-table entry. ne[0] is the fastest (contiguous) dimension."""

    def __init__(self, name, ne, type_id, offset):
        self.name = name
        self.ne = list(ne)
        self.type = type_id
        self.offset = offset  # relative to the data section

    @property
    def n_elems(self):
        n = 1
        for d in self.ne:
            n *= d
        return n

    @property
    def shape(self):
        """numpy shape (slowest first): reversed ne."""
        return tuple(reversed(self.ne))


class _Cursor:
    """Bounds-checked little-endian reader over a bytes-like buffer."""

    def __init__(self, buf):
        self.buf = buf
        self.pos = 0

    def need(self, n, what):
        if n < 0 or self.pos + n > len(self.buf):
            raise GGUFError("truncated file: %s needs %d bytes at offset %d, file has %d"
                            % (what, n, self.pos, len(self.buf)))

    def scalar(self, vt, what):
        fmt = SCALAR_FORMATS[vt]
        size = struct.calcsize(fmt)
        self.need(size, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return v

    def u32(self, what):
        return self.scalar(VT_UINT32, what)

    def u64(self, what):
        return self.scalar(VT_UINT64, what)

    def string(self, what):
        n = self.u64(what + " length")
        self.need(n, what)
        s = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        try:
            return s.decode("utf-8")
        except UnicodeDecodeError:
            return s  # keep raw bytes: tokenizer pieces need not be valid UTF-8

    def value(self, vt, what):
        if vt in SCALAR_FORMATS:
            return self.scalar(vt, what)
        if vt == VT_STRING:
            return self.string(what)
        if vt == VT_ARRAY:
            et = self.u32(what + " element type")
            n = self.u64(what + " element count")
            if et in SCALAR_DTYPES:
                dt = np.dtype(SCALAR_DTYPES[et])
                if n > (len(self.buf) - self.pos) // dt.itemsize:
                    raise GGUFError("truncated file: array %s of %d elements at offset %d"
                                    % (what, n, self.pos))
                arr = np.frombuffer(self.buf, dtype=dt, count=n, offset=self.pos).copy()
                self.pos += n * dt.itemsize
                return arr.astype(bool) if et == VT_BOOL else arr
            if et in (VT_STRING, VT_ARRAY):
                # every element takes at least 8 (string) or 12 (array) bytes
                if n > (len(self.buf) - self.pos) // 8:
                    raise GGUFError("truncated file: array %s of %d elements at offset %d"
                                    % (what, n, self.pos))
                return [self.value(et, "%s[%d]" % (what, i)) for i in range(n)]
            raise GGUFError("bad array element type %d in %s" % (et, what))
        raise GGUFError("bad value type %d in %s at offset %d" % (vt, what, self.pos))


class GGUFFile:
    """A parsed GGUF file (versions 2 and 3), data section memory-mapped."""

    def __init__(self, path):
        self.path = path
        try:
            self.buf = np.memmap(path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as e:
            raise GGUFError("cannot map %s: %s" % (path, e))
        c = _Cursor(self.buf)
        c.need(4, "magic")
        if bytes(self.buf[0:4]) != GGUF_MAGIC:
            raise GGUFError("%s: not a GGUF file (magic %r)" % (path, bytes(self.buf[0:4])))
        c.pos = 4
        self.version = c.u32("version")
        if self.version not in (2, 3):
            raise GGUFError("%s: unsupported GGUF version %d" % (path, self.version))
        n_tensors = c.u64("tensor count")
        n_kv = c.u64("metadata count")
        self.metadata = {}
        self.metadata_types = {}
        for i in range(n_kv):
            key = c.string("metadata key %d" % i)
            vt = c.u32("type of " + str(key))
            self.metadata[key] = c.value(vt, str(key))
            self.metadata_types[key] = vt
        self.tensors = {}
        self.tensor_order = []
        for i in range(n_tensors):
            name = c.string("tensor name %d" % i)
            n_dims = c.u32("dims of " + str(name))
            if n_dims < 1 or n_dims > 4:
                raise GGUFError("tensor %s: %d dimensions" % (name, n_dims))
            ne = [c.u64("dim of " + str(name)) for _ in range(n_dims)]
            type_id = c.u32("type of " + str(name))
            offset = c.u64("offset of " + str(name))
            if name in self.tensors:
                raise GGUFError("duplicate tensor %s" % name)
            self.tensors[name] = TensorInfo(name, ne, type_id, offset)
            self.tensor_order.append(name)
        self.alignment = int(self.metadata.get("general.alignment", 32))
        if self.alignment <= 0 or self.alignment & (self.alignment - 1):
            raise GGUFError("general.alignment %d is not a power of two" % self.alignment)
        self.data_offset = (c.pos + self.alignment - 1) // self.alignment * self.alignment
        for t in self.tensors.values():
            if t.offset % self.alignment:
                raise GGUFError("tensor %s: offset %d not aligned to %d"
                                % (t.name, t.offset, self.alignment))
            end = self.data_offset + t.offset + tensor_nbytes(t)
            if end > len(self.buf):
                raise GGUFError("tensor %s ends at %d, past the end of the file (%d)"
                                % (t.name, end, len(self.buf)))

    def raw(self, name):
        """The bytes of a tensor as a uint8 view into the mapping."""
        t = self.info(name)
        start = self.data_offset + t.offset
        return self.buf[start:start + tensor_nbytes(t)]

    def info(self, name):
        t = self.tensors.get(name)
        if t is None:
            raise RefError("tensor %s not found in %s" % (name, self.path))
        return t

    def tensor(self, name):
        """Dequantized float64 array, numpy shape = reversed ne."""
        t = self.info(name)
        return dequantize(t.type, self.raw(name), t.n_elems).reshape(t.shape)


# ---------------------------------------------------------------------------
# Tensor types and dequantizers (from the GGUF / ggml block definitions)
# ---------------------------------------------------------------------------

def _f16(col):
    """(nb, 2) uint8 -> (nb, 1) float64, IEEE half."""
    return np.ascontiguousarray(col).view("<f2").astype(np.float64)


def _deq_f32(raw):
    return raw.view("<f4").astype(np.float64)


def _deq_f16(raw):
    return raw.view("<f2").astype(np.float64)


def _deq_bf16(raw):
    hi = raw.view("<u2").astype(np.uint32) << 16
    return hi.view("<f4").astype(np.float64)


def _deq_q8_0(raw):
    # block: f16 d, int8 qs[32];  x = d * q
    b = raw.reshape(-1, 34)
    d = _f16(b[:, 0:2])
    q = np.ascontiguousarray(b[:, 2:34]).view(np.int8).astype(np.float64)
    return (d * q).reshape(-1)


def _deq_q4_0(raw):
    # block: f16 d, u8 qs[16]; element j<16 = low nibble of qs[j], j>=16 = high nibble of qs[j-16]
    b = raw.reshape(-1, 18)
    d = _f16(b[:, 0:2])
    qs = b[:, 2:18].astype(np.int64)
    q = np.concatenate([qs & 15, qs >> 4], axis=1) - 8
    return (d * q).reshape(-1)


def q4_k_scale_min(scales):
    """(nb, 12) uint8 packed 6-bit fields -> (sc, m), each (nb, 8) int64.
    Sub-blocks 0..3: low 6 bits of bytes 0..3 (scale) and 4..7 (min).
    Sub-blocks 4..7: low/high nibble of bytes 8..11 give the low 4 bits of
    scale/min; the top 2 bits come from bits 6..7 of bytes 0..3 / 4..7."""
    s = scales.astype(np.int64)
    sc = np.empty((s.shape[0], 8), dtype=np.int64)
    m = np.empty((s.shape[0], 8), dtype=np.int64)
    sc[:, 0:4] = s[:, 0:4] & 63
    m[:, 0:4] = s[:, 4:8] & 63
    sc[:, 4:8] = (s[:, 8:12] & 15) | ((s[:, 0:4] >> 6) << 4)
    m[:, 4:8] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc, m


def _deq_q4_k(raw):
    # block (144 B): f16 d, f16 dmin, u8 scales[12], u8 qs[128]
    # 4 chunks of 64 elements; chunk c uses qs[32c:32c+32]: low nibbles are
    # sub-block 2c, high nibbles sub-block 2c+1.  x = d*sc[s]*q - dmin*m[s]
    b = raw.reshape(-1, 144)
    nb = b.shape[0]
    d = _f16(b[:, 0:2])
    dmin = _f16(b[:, 2:4])
    sc, m = q4_k_scale_min(b[:, 4:16])
    qs = b[:, 16:144].astype(np.int64).reshape(nb, 4, 32)
    q = np.stack([qs & 15, qs >> 4], axis=2).reshape(nb, 8, 32)
    x = (d * sc)[:, :, None] * q - (dmin * m)[:, :, None]
    return x.reshape(-1)


def _deq_q6_k(raw):
    # block (210 B): u8 ql[128], u8 qh[64], i8 scales[16], f16 d
    # two halves of 128 elements; half h uses ql[64h:64h+64], qh[32h:32h+32]:
    #   element l      : low nibble of ql[l]      | bits 0-1 of qh[l] << 4
    #   element l + 32 : low nibble of ql[l + 32] | bits 2-3 of qh[l] << 4
    #   element l + 64 : high nibble of ql[l]     | bits 4-5 of qh[l] << 4
    #   element l + 96 : high nibble of ql[l + 32]| bits 6-7 of qh[l] << 4
    # q is 6-bit unsigned, value = d * scales[element // 16] * (q - 32)
    b = raw.reshape(-1, 210)
    nb = b.shape[0]
    ql = b[:, 0:128].astype(np.int64).reshape(nb, 2, 64)
    qh = b[:, 128:192].astype(np.int64).reshape(nb, 2, 32)
    sc = np.ascontiguousarray(b[:, 192:208]).view(np.int8).astype(np.float64)
    d = _f16(b[:, 208:210])
    lo_a, lo_b = ql[:, :, 0:32], ql[:, :, 32:64]
    q = np.concatenate([
        (lo_a & 15) | (((qh >> 0) & 3) << 4),
        (lo_b & 15) | (((qh >> 2) & 3) << 4),
        (lo_a >> 4) | (((qh >> 4) & 3) << 4),
        (lo_b >> 4) | (((qh >> 6) & 3) << 4),
    ], axis=2).reshape(nb, 16, 16) - 32
    x = d[:, :, None] * sc[:, :, None] * q
    return x.reshape(-1)


# issue 22 types. The 32-element ones keep Q4_0's nibble order (element j < 16 in
# the low nibble of qs[j], element j + 16 in the high nibble); the 5-bit ones take
# bit 4 of element i from bit i of the little-endian u32 qh.

IQ4NL_VALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10,
                         1, 13, 25, 38, 53, 69, 89, 113], dtype=np.int64)


def _nibbles32(qs):
    qs = qs.astype(np.int64)
    return np.concatenate([qs & 15, qs >> 4], axis=1)


def _high_bits32(qh4):
    h = np.ascontiguousarray(qh4).view("<u4").astype(np.int64)  # (nb, 1)
    return ((h >> np.arange(32)) & 1) << 4


def _deq_q4_1(raw):
    # block (20 B): f16 d, f16 m, u8 qs[16];  x = d * q + m
    b = raw.reshape(-1, 20)
    return (_f16(b[:, 0:2]) * _nibbles32(b[:, 4:20]) + _f16(b[:, 2:4])).reshape(-1)


def _deq_q5_0(raw):
    # block (22 B): f16 d, u8 qh[4], u8 qs[16];  x = d * (q - 16)
    b = raw.reshape(-1, 22)
    q = _nibbles32(b[:, 6:22]) | _high_bits32(b[:, 2:6])
    return (_f16(b[:, 0:2]) * (q - 16)).reshape(-1)


def _deq_q5_1(raw):
    # block (24 B): f16 d, f16 m, u8 qh[4], u8 qs[16];  x = d * q + m
    b = raw.reshape(-1, 24)
    q = _nibbles32(b[:, 8:24]) | _high_bits32(b[:, 4:8])
    return (_f16(b[:, 0:2]) * q + _f16(b[:, 2:4])).reshape(-1)


def _deq_iq4_nl(raw):
    # block (18 B): f16 d, u8 qs[16];  x = d * IQ4NL_VALUES[q]
    b = raw.reshape(-1, 18)
    return (_f16(b[:, 0:2]) * IQ4NL_VALUES[_nibbles32(b[:, 2:18])]).reshape(-1)


def _deq_iq4_xs(raw):
    # block (136 B): f16 d, u16 scales_h, u8 scales_l[4], u8 qs[128]; 8 sub-blocks
    # of 32 (qs[16j:16j+16], IQ4_NL's nibble order); 6-bit ls_j = nibble j%2 of
    # scales_l[j//2] | bits 2j..2j+1 of scales_h << 4;  x = d * (ls_j - 32) * value
    b = raw.reshape(-1, 136)
    nb = b.shape[0]
    d = _f16(b[:, 0:2])
    sh = np.ascontiguousarray(b[:, 2:4]).view("<u2").astype(np.int64)  # (nb, 1)
    sl = b[:, 4:8].astype(np.int64)
    j = np.arange(8)
    ls = ((sl[:, j // 2] >> (4 * (j % 2))) & 15) | (((sh >> (2 * j)) & 3) << 4)
    qs = b[:, 8:136].reshape(nb * 8, 16)
    v = IQ4NL_VALUES[_nibbles32(qs)].reshape(nb, 8, 32)
    return (d[:, :, None] * (ls - 32)[:, :, None] * v).reshape(-1)


def _q2_bits(qs):
    """(nb, 64) uint8 -> (nb, 256) int64 2-bit codes: element 128h + 32k + l is
    bits 2k..2k+1 of qs[32h + l]."""
    q = qs.astype(np.int64).reshape(-1, 2, 1, 32)
    shifts = np.array([0, 2, 4, 6], dtype=np.int64).reshape(1, 1, 4, 1)
    return ((q >> shifts) & 3).reshape(-1, 256)


def _deq_q2_k(raw):
    # block (84 B): u8 scales[16], u8 qs[64], f16 d, f16 dmin
    # 16 sub-blocks of 16: sc = scales[s] & 15, m = scales[s] >> 4
    # x = d*sc*q - dmin*m, q 2 bits (_q2_bits)
    b = raw.reshape(-1, 84)
    nb = b.shape[0]
    s = b[:, 0:16].astype(np.int64)
    q = _q2_bits(b[:, 16:80]).reshape(nb, 16, 16)
    d = _f16(b[:, 80:82])
    dmin = _f16(b[:, 82:84])
    x = (d * (s & 15))[:, :, None] * q - (dmin * (s >> 4))[:, :, None]
    return x.reshape(-1)


def _deq_q3_k(raw):
    # block (110 B): u8 hmask[32], u8 qs[64], u8 scales[12], f16 d
    # q = 2 low bits (_q2_bits) | bit (e // 32) of hmask[e % 32] << 2, value q - 4
    # 16 six-bit scale codes c: low 4 bits from bytes 0..7 (low nibbles: sub-blocks
    # 0..7, high nibbles: 8..15), high 2 bits of sub-block s from byte 8 + s % 4 at
    # bit 2 * (s // 4);  x = d * (c - 32) * (q - 4)
    b = raw.reshape(-1, 110)
    nb = b.shape[0]
    hm = b[:, 0:32].astype(np.int64)
    lo = _q2_bits(b[:, 32:96])
    e = np.arange(256)
    hbit = (hm[:, e % 32] >> (e // 32)) & 1
    q = (lo | (hbit << 2)) - 4
    S = b[:, 96:108].astype(np.int64)
    c = np.empty((nb, 16), dtype=np.int64)
    for sb in range(16):
        low = S[:, sb] & 15 if sb < 8 else S[:, sb - 8] >> 4
        c[:, sb] = low | (((S[:, 8 + sb % 4] >> (2 * (sb // 4))) & 3) << 4)
    d = _f16(b[:, 108:110])
    x = (d * (c - 32))[:, :, None] * q.reshape(nb, 16, 16)
    return x.reshape(-1)


def _deq_q5_k(raw):
    # block (176 B): f16 d, f16 dmin, u8 scales[12] (as q4_K), u8 qh[32], u8 qs[128]
    # q4_K's nibbles plus 16 * (bit s of qh[l]) for element 32s + l
    b = raw.reshape(-1, 176)
    nb = b.shape[0]
    d = _f16(b[:, 0:2])
    dmin = _f16(b[:, 2:4])
    sc, m = q4_k_scale_min(b[:, 4:16])
    qh = b[:, 16:48].astype(np.int64)
    qs = b[:, 48:176].astype(np.int64).reshape(nb, 4, 32)
    q = np.stack([qs & 15, qs >> 4], axis=2).reshape(nb, 8, 32)
    q = q + 16 * ((qh[:, None, :] >> np.arange(8).reshape(1, 8, 1)) & 1)
    x = (d * sc)[:, :, None] * q - (dmin * m)[:, :, None]
    return x.reshape(-1)


# type id -> (name, elements per block, bytes per block, dequantizer)
TENSOR_TYPES = {
    0: ("f32", 1, 4, _deq_f32),
    1: ("f16", 1, 2, _deq_f16),
    2: ("q4_0", 32, 18, _deq_q4_0),
    8: ("q8_0", 32, 34, _deq_q8_0),
    12: ("q4_K", 256, 144, _deq_q4_k),
    14: ("q6_K", 256, 210, _deq_q6_k),
    30: ("bf16", 1, 2, _deq_bf16),
    3: ("q4_1", 32, 20, _deq_q4_1),
    6: ("q5_0", 32, 22, _deq_q5_0),
    7: ("q5_1", 32, 24, _deq_q5_1),
    20: ("iq4_nl", 32, 18, _deq_iq4_nl),
    23: ("iq4_xs", 256, 136, _deq_iq4_xs),
    10: ("q2_K", 256, 84, _deq_q2_k),
    11: ("q3_K", 256, 110, _deq_q3_k),
    13: ("q5_K", 256, 176, _deq_q5_k),
}


def type_row(type_id):
    row = TENSOR_TYPES.get(type_id)
    if row is None:
        raise GGUFError("unsupported tensor type %d" % type_id)
    return row


def tensor_nbytes(t):
    name, be, bb, _ = type_row(t.type)
    if t.ne[0] % be:
        raise GGUFError("tensor %s: row of %d elements is not a whole number of %s blocks"
                        % (t.name, t.ne[0], name))
    return t.n_elems // be * bb


def dequantize(type_id, raw, n):
    """n elements of type_id from uint8 array raw -> float64 (n,)."""
    name, be, bb, fn = type_row(type_id)
    if n % be or len(raw) != n // be * bb:
        raise GGUFError("%s: %d bytes do not hold %d elements" % (name, len(raw), n))
    return fn(np.asarray(raw, dtype=np.uint8))


# ---------------------------------------------------------------------------
# Qwen2 forward pass (float64)
# ---------------------------------------------------------------------------

def rms_norm(x, w, eps):
    """x (T, n), w (n,) -> x / sqrt(mean(x^2) + eps) * w."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def yarn_inv_freq(hd, base, factor, orig_ctx, beta_fast=32.0, beta_slow=1.0):
    """YaRN (Peng et al. 2023; the "yarn" rope_scaling of Hugging Face transformers,
    _compute_yarn_parameters): -> (inverse frequencies (hd/2,), attention factor).
    Frequencies of dimensions that turn fewer than beta_slow times over the original
    context are interpolated (divided by factor), those that turn more than
    beta_fast times are kept, with a linear ramp between; cos and sin are scaled by
    0.1 ln(factor) + 1."""
    pos_freqs = base ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    extrapolation = 1.0 / pos_freqs
    interpolation = 1.0 / (factor * pos_freqs)

    def correction_dim(n_rot):  # the dimension that turns n_rot times over orig_ctx
        return (hd * math.log(orig_ctx / (n_rot * 2 * math.pi))) / (2 * math.log(base))

    low = max(math.floor(correction_dim(beta_fast)), 0)
    high = min(math.ceil(correction_dim(beta_slow)), hd - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(hd // 2, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    extrapolation_factor = 1.0 - ramp
    inv = interpolation * (1.0 - extrapolation_factor) + extrapolation * extrapolation_factor
    return inv, 0.1 * math.log(factor) + 1.0


def rope(x, positions, base, layout="neox", yarn=None):
    """x (T, heads, hd); rotate pairs by theta_i = pos * base^(-2i/hd), i < hd/2.
    neox: element i pairs with i + hd/2.  normal: element 2i pairs with 2i+1
    (only used by tests to show that the wrong layout is caught).
    yarn: None, or (factor, original context): see yarn_inv_freq."""
    hd = x.shape[-1]
    half = hd // 2
    mscale = 1.0
    if yarn is None:
        inv = base ** (-2.0 * np.arange(half, dtype=np.float64) / hd)
    else:
        inv, mscale = yarn_inv_freq(hd, base, yarn[0], yarn[1])
    ang = np.asarray(positions, dtype=np.float64)[:, None] * inv[None, :]  # (T, half)
    cos = np.cos(ang)[:, None, :] * mscale
    sin = np.sin(ang)[:, None, :] * mscale
    if layout == "neox":
        a, b = x[..., :half], x[..., half:]
    elif layout == "normal":
        a, b = x[..., 0::2], x[..., 1::2]
    else:
        raise RefError("unknown rope layout %s" % layout)
    ra = a * cos - b * sin
    rb = a * sin + b * cos
    out = np.empty_like(x)
    if layout == "neox":
        out[..., :half], out[..., half:] = ra, rb
    else:
        out[..., 0::2], out[..., 1::2] = ra, rb
    return out


def silu(x):
    return x / (1.0 + np.exp(-x))


def _meta(g, key, default=None):
    v = g.metadata.get(key, default)
    if v is None:
        raise RefError("metadata key %s missing in %s" % (key, g.path))
    return v


class Qwen2Ref:
    """Float64 Qwen2 model built from a GGUFFile; all weights dequantized up front."""

    def __init__(self, g, rope_layout="neox", gqa_map="block"):
        arch = g.metadata.get("general.architecture", "qwen2")
        if arch != "qwen2":
            raise RefError("general.architecture is %r, not qwen2" % (arch,))
        p = "qwen2."
        self.n_layer = int(_meta(g, p + "block_count"))
        self.n_embd = int(_meta(g, p + "embedding_length"))
        self.n_ff = int(_meta(g, p + "feed_forward_length"))
        self.n_head = int(_meta(g, p + "attention.head_count"))
        self.n_kv = int(_meta(g, p + "attention.head_count_kv", self.n_head))
        self.eps = float(_meta(g, p + "attention.layer_norm_rms_epsilon"))
        self.rope_base = float(_meta(g, p + "rope.freq_base", 10000.0))
        self.head_dim = int(g.metadata.get(p + "attention.key_length",
                                           self.n_embd // max(self.n_head, 1)))
        self.rope_layout = rope_layout
        # RoPE scaling: qwen2.rope.scaling.type "yarn" with .factor and
        # .original_context_length (absent: context_length, as transformers'
        # original_max_position_embeddings defaults to max_position_embeddings)
        self.yarn = None
        st = g.metadata.get(p + "rope.scaling.type", "none")
        if st == "yarn":
            f = float(_meta(g, p + "rope.scaling.factor"))
            oc = g.metadata.get(p + "rope.scaling.original_context_length")
            if oc is None:
                oc = int(_meta(g, p + "context_length"))
            self.yarn = (f, int(oc))
        elif st != "none":
            raise RefError("rope scaling %r not supported" % (st,))
        # "block": query head h reads kv head h // (n_head / n_kv) (Qwen2, llama.cpp);
        # "modulo": h % n_kv - wrong, only for tests that show the mistake is caught
        self.gqa_map = gqa_map
        if self.n_head <= 0 or self.n_kv <= 0 or self.n_head % self.n_kv:
            raise RefError("head counts %d/%d not a valid GQA split" % (self.n_head, self.n_kv))
        hd, nh, nkv, ne = self.head_dim, self.n_head, self.n_kv, self.n_embd

        def get(name, shape):
            w = g.tensor(name)
            if w.shape != shape:
                raise RefError("tensor %s has shape %s, expected %s" % (name, w.shape, shape))
            return w

        tok = g.info("token_embd.weight")
        self.n_vocab = tok.ne[1]
        self.tok_embd = get("token_embd.weight", (self.n_vocab, ne))
        self.layers = []
        for i in range(self.n_layer):
            b = "blk.%d." % i
            self.layers.append({
                "attn_norm": get(b + "attn_norm.weight", (ne,)),
                "wq": get(b + "attn_q.weight", (nh * hd, ne)),
                "bq": get(b + "attn_q.bias", (nh * hd,)),
                "wk": get(b + "attn_k.weight", (nkv * hd, ne)),
                "bk": get(b + "attn_k.bias", (nkv * hd,)),
                "wv": get(b + "attn_v.weight", (nkv * hd, ne)),
                "bv": get(b + "attn_v.bias", (nkv * hd,)),
                "wo": get(b + "attn_output.weight", (ne, nh * hd)),
                "ffn_norm": get(b + "ffn_norm.weight", (ne,)),
                "gate": get(b + "ffn_gate.weight", (self.n_ff, ne)),
                "up": get(b + "ffn_up.weight", (self.n_ff, ne)),
                "down": get(b + "ffn_down.weight", (ne, self.n_ff)),
            })
        self.out_norm = get("output_norm.weight", (ne,))
        if "output.weight" in g.tensors:
            self.output = get("output.weight", (self.n_vocab, ne))
        else:  # tied embeddings
            self.output = self.tok_embd

    def forward(self, tokens):
        """tokens: list of ids (positions 0..T-1) -> logits (T, n_vocab) float64."""
        toks = np.asarray(list(tokens), dtype=np.int64)
        T = len(toks)
        if T == 0:
            raise RefError("empty token list")
        if toks.min() < 0 or toks.max() >= self.n_vocab:
            raise RefError("token id out of range [0, %d)" % self.n_vocab)
        hd, nh, nkv = self.head_dim, self.n_head, self.n_kv
        group = nh // nkv
        pos = np.arange(T)
        causal = np.triu(np.ones((T, T), dtype=bool), k=1)  # True where key s > query t
        x = self.tok_embd[toks].copy()  # (T, n_embd)
        for L in self.layers:
            h = rms_norm(x, L["attn_norm"], self.eps)
            q = (h @ L["wq"].T + L["bq"]).reshape(T, nh, hd)
            k = (h @ L["wk"].T + L["bk"]).reshape(T, nkv, hd)
            v = (h @ L["wv"].T + L["bv"]).reshape(T, nkv, hd)
            q = rope(q, pos, self.rope_base, self.rope_layout, self.yarn)
            k = rope(k, pos, self.rope_base, self.rope_layout, self.yarn)
            if self.gqa_map == "block":
                kv_of = np.arange(nh) // group
            elif self.gqa_map == "modulo":
                kv_of = np.arange(nh) % nkv
            else:
                raise RefError("unknown gqa_map %s" % self.gqa_map)
            kh = k[:, kv_of, :]  # (T, nh, hd)
            vh = v[:, kv_of, :]
            s = np.einsum("thd,shd->hts", q, kh) / math.sqrt(hd)  # (nh, T, T)
            s = np.where(causal[None, :, :], -np.inf, s)
            s = s - s.max(axis=-1, keepdims=True)
            p = np.exp(s)
            p /= p.sum(axis=-1, keepdims=True)
            a = np.einsum("hts,shd->thd", p, vh).reshape(T, nh * hd)
            x = x + a @ L["wo"].T
            h = rms_norm(x, L["ffn_norm"], self.eps)
            f = silu(h @ L["gate"].T) * (h @ L["up"].T)
            x = x + f @ L["down"].T
        x = rms_norm(x, self.out_norm, self.eps)
        return x @ self.output.T

    def generate(self, prompt, n):
        """Greedy: n new ids; each step recomputes the whole sequence, argmax
        takes the lowest id on ties (numpy's argmax does)."""
        seq = list(prompt)
        out = []
        for _ in range(n):
            nxt = int(np.argmax(self.forward(seq)[-1]))
            out.append(nxt)
            seq.append(nxt)
        return out


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------

def _parse_tokens(s):
    try:
        return [int(t) for t in s.split(",") if t.strip() != ""]
    except ValueError:
        raise RefError("bad --tokens %r (want comma-separated ids)" % s)


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(prog="ref_qwen2.py",
                                 description="float64 numpy reference of the Qwen2 forward pass")
    ap.add_argument("cmd", choices=["info", "generate", "forward"])
    ap.add_argument("model")
    ap.add_argument("--tokens", default="")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--logits-out")
    a = ap.parse_args(argv)
    try:
        g = GGUFFile(a.model)
        if a.cmd == "info":
            print("GGUF v%d, %d metadata keys, %d tensors, alignment %d, data at %d"
                  % (g.version, len(g.metadata), len(g.tensors), g.alignment, g.data_offset))
            for k, v in g.metadata.items():
                if isinstance(v, (list, np.ndarray)):
                    v = "[%d items]" % len(v)
                print("  %s = %s" % (k, v))
            for name in g.tensor_order:
                t = g.tensors[name]
                print("  %-32s %-5s ne=%s" % (name, type_row(t.type)[0], t.ne))
            return 0
        toks = _parse_tokens(a.tokens)
        m = Qwen2Ref(g)
        if a.cmd == "generate":
            print(",".join(str(t) for t in m.generate(toks, a.max_tokens)))
        else:
            logits = m.forward(toks)
            if a.logits_out:
                logits.astype("<f4").tofile(a.logits_out)
            print("%d rows of %d logits; argmax of last row %d"
                  % (logits.shape[0], logits.shape[1], int(np.argmax(logits[-1]))))
        return 0
    except (GGUFError, RefError) as e:
        print("ref_qwen2: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
