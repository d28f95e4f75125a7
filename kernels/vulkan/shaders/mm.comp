#version 450
// mm.comp - the FAST matmul y[t][r] = W[r] . x[t] (+ bias[r]), one workgroup
// per output element, with the scalar reference's numbers (ops_scalar.c
// fast_dot_row, kern_dot16_ref): integer block sums in parallel, then the
// float steps in block order. WT is the GGML type id of the weights (0 f32, 1 f16, 30 bf16, 2 q4_0,
// 8 q8_0, 12 q4_K, 14 q6_K).
// pc: 0 rows, 1 cols, 2 n_tokens, 3 has_bias, 4 y offset, 5 y stride (floats),
//     6 x offset, 7 x stride (floats), 8 row bytes, 9 w offset (bytes),
//     10 bias offset, 11 xq offset (uints)
#include "common.glsl"
layout(local_size_x = 64) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer W { uint w[]; };
layout(std430, binding = 2) readonly buffer X { float x[]; };
layout(std430, binding = 3) readonly buffer XQ { uint xq[]; };
layout(std430, binding = 4) readonly buffer B { float bias[]; };

uint rd8(uint o) { return (w[o >> 2] >> ((o & 3u) * 8u)) & 255u; }
uint rd16(uint o) { return rd8(o) | (rd8(o + 1u) << 8); }
int rds8(uint o) { return int(rd8(o) << 24) >> 24; }
int xcode(uint base, uint i) { return bitfieldExtract(int(xq[base + (i >> 2)]), int(8u * (i & 3u)), 8); }

#if WT == 0 || WT == 1 || WT == 30
float wval(uint wrow, uint c) {
#if WT == 0
    return uintBitsToFloat(w[(wrow >> 2) + c]);
#elif WT == 1
    return half_to_float(rd16(wrow + 2u * c));
#else
    return uintBitsToFloat(rd16(wrow + 2u * c) << 16);
#endif
}
#define NB_CHUNK 16u
#else
// The terms of weight block b against token t's activation block: the float
// step(s) acc = fma(dd, isum, acc) [; acc = fma(dm, ism, acc)], integers exact.
void block_terms(uint wrow, uint t, uint b, out float dd, out int isum, out float dm, out int ism) {
    uint cols = pc.u[1];
    dm = 0.0;
    ism = 0;
    isum = 0;
#if WT == 8 || WT == 2
    uint rec = pc.u[11] + (t * (cols / 32u) + b) * 10u;
    float xd = uintBitsToFloat(xq[rec]);
#if WT == 8
    uint o = wrow + b * 34u;
    for (uint i = 0u; i < 32u; i++) isum += rds8(o + 2u + i) * xcode(rec + 2u, i);
#else
    uint o = wrow + b * 18u;
    for (uint i = 0u; i < 16u; i++) {
        uint v = rd8(o + 2u + i);
        isum += (int(v & 15u) - 8) * xcode(rec + 2u, i);
        isum += (int(v >> 4) - 8) * xcode(rec + 2u, i + 16u);
    }
#endif
    precise float p = half_to_float(rd16(o)) * xd;
    dd = p;
#elif WT == 12
    uint rec = pc.u[11] + (t * (cols / 256u) + b) * 89u;
    float xd = uintBitsToFloat(xq[rec]);
    uint o = wrow + b * 144u, so = o + 4u, qo = o + 16u;
    for (uint j = 0u; j < 8u; j++) {
        int sc, m;
        if (j < 4u) {
            sc = int(rd8(so + j) & 63u);
            m = int(rd8(so + j + 4u) & 63u);
        } else {
            sc = int((rd8(so + j + 4u) & 15u) | ((rd8(so + j - 4u) >> 6) << 4));
            m = int((rd8(so + j + 4u) >> 4) | ((rd8(so + j) >> 6) << 4));
        }
        uint shift = (j & 1u) * 4u, qs = qo + 32u * (j >> 1);
        int dot = 0;
        for (uint l = 0u; l < 32u; l++) dot += int((rd8(qs + l) >> shift) & 15u) * xcode(rec + 25u, 32u * j + l);
        isum += sc * dot;
        ism += m * int(xq[rec + 17u + j]);
    }
    precise float p1 = half_to_float(rd16(o)) * xd;
    precise float p2 = -(half_to_float(rd16(o + 2u)) * xd);
    dd = p1;
    dm = p2;
#elif WT == 14
    uint rec = pc.u[11] + (t * (cols / 256u) + b) * 89u;
    float xd = uintBitsToFloat(xq[rec]);
    uint o = wrow + b * 210u;
    for (uint j = 0u; j < 16u; j++) {
        int dot = 0;
        for (uint i = 0u; i < 16u; i++) {
            uint e = 16u * j + i, h = e >> 7, l = e & 127u, g = l >> 5, l32 = l & 31u;
            uint ql = rd8(o + 64u * h + l32 + ((g & 1u) != 0u ? 32u : 0u));
            uint qh = rd8(o + 128u + 32u * h + l32);
            int q = int((g < 2u ? (ql & 15u) : (ql >> 4)) | (((qh >> (2u * g)) & 3u) << 4));
            dot += q * xcode(rec + 25u, e);
        }
        isum += rds8(o + 192u + j) * (dot - 32 * int(xq[rec + 1u + j]));
    }
    precise float p = half_to_float(rd16(o + 208u)) * xd;
    dd = p;
#endif
}
#define NB_CHUNK 512u
shared float s_dd[NB_CHUNK], s_dm[NB_CHUNK];
shared int s_is[NB_CHUNK], s_im[NB_CHUNK];
#endif
shared float s_lane[16];

#if ROWWISE == 0
// One invocation per (row, token), the reference's loop as it is (lavapipe:
// its workgroups run as one CPU thread, so fewer barriers run faster).
void main() {
    uint r = gl_GlobalInvocationID.x, t = gl_GlobalInvocationID.y;
    if (r >= pc.u[0] || t >= pc.u[2]) return;
    uint cols = pc.u[1], wrow = pc.u[9] + r * pc.u[8];
    precise float acc = 0.0;
#if WT == 0 || WT == 1 || WT == 30
    uint xo = pc.u[6] + t * pc.u[7];
    precise float lane[16];
    for (int l = 0; l < 16; l++) lane[l] = 0.0;
    for (uint c = 0u; c < cols; c++) lane[c & 15u] = fmaf_(wval(wrow, c), x[xo + c], lane[c & 15u]);
    [[unroll]] for (int h = 8; h >= 1; h >>= 1)
        [[unroll]] for (int i = 0; i < h; i++) lane[i] = lane[i] + lane[i + h];
    acc = lane[0];
#else
#if WT == 12 || WT == 14
    uint nb = cols / 256u;
#else
    uint nb = cols / 32u;
#endif
    for (uint b = 0u; b < nb; b++) {
        float dd, dm;
        int isum, ism;
        block_terms(wrow, t, b, dd, isum, dm, ism);
        acc = fmaf_(dd, float(isum), acc);
#if WT == 12
        acc = fmaf_(dm, float(ism), acc);
#endif
    }
#endif
    precise float v = pc.u[3] != 0u ? acc + bias[pc.u[10] + r] : acc;
    y[pc.u[4] + t * pc.u[5] + r] = v;
}
#else
// One workgroup per (row, token): the 64 threads take the blocks (quantized
// types) or the 16 lanes (float types) in parallel; thread 0 then runs the
// float chain in the reference's order.
void main() {
    uint r = gl_WorkGroupID.x + gl_WorkGroupID.z * 32768u, t = gl_WorkGroupID.y, tid = gl_LocalInvocationID.x;
    if (r >= pc.u[0] || t >= pc.u[2]) return; // whole workgroups: no barrier is split
    uint cols = pc.u[1], wrow = pc.u[9] + r * pc.u[8];
    precise float acc = 0.0;
#if WT == 0 || WT == 1 || WT == 30
    // kern_dot16_ref: lane l sums c = l mod 16 in increasing c; tree 8,4,2,1
    uint xo = pc.u[6] + t * pc.u[7];
    if (tid < 16u) {
        precise float lane = 0.0;
        for (uint c = tid; c < cols; c += 16u) lane = fmaf_(wval(wrow, c), x[xo + c], lane);
        s_lane[tid] = lane;
    }
    barrier();
    if (tid == 0u) {
        precise float v[16];
        for (int i = 0; i < 16; i++) v[i] = s_lane[i];
        [[unroll]] for (int h = 8; h >= 1; h >>= 1)
            [[unroll]] for (int i = 0; i < h; i++) v[i] = v[i] + v[i + h];
        acc = v[0];
    }
#else
#if WT == 12 || WT == 14
    uint nb = cols / 256u;
#else
    uint nb = cols / 32u;
#endif
    for (uint c0 = 0u; c0 < nb; c0 += NB_CHUNK) {
        uint n = min(nb - c0, NB_CHUNK);
        for (uint i = tid; i < n; i += 64u) {
            float dd, dm;
            int isum, ism;
            block_terms(wrow, t, c0 + i, dd, isum, dm, ism);
            s_dd[i] = dd, s_is[i] = isum, s_dm[i] = dm, s_im[i] = ism;
        }
        barrier();
        if (tid == 0u)
            for (uint i = 0u; i < n; i++) {
                acc = fmaf_(s_dd[i], float(s_is[i]), acc);
#if WT == 12
                acc = fmaf_(s_dm[i], float(s_im[i]), acc);
#endif
            }
        barrier();
    }
#endif
    if (tid == 0u) {
        precise float v = pc.u[3] != 0u ? acc + bias[pc.u[10] + r] : acc;
        y[pc.u[4] + t * pc.u[5] + r] = v;
    }
}
#endif
