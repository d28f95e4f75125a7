#version 450
// mm.comp - the FAST matmul y[t][r] = W[r] . x[t] (+ bias[r]), one invocation
// per output element, the scalar reference's loop (ops_scalar.c fast_dot_row,
// kern_dot16_ref) as it is: integer block sums, then the float steps in block
// order. WT is the GGML type id of the weights (0 f32, 1 f16, 30 bf16, 2 q4_0,
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
// kern_dot16_ref: 16 lanes, lane = c mod 16, fma in increasing c, tree 8,4,2,1.
float dot_row(uint wrow, uint t) {
    uint cols = pc.u[1], xo = pc.u[6] + t * pc.u[7];
    precise float lane[16];
    [[unroll]] for (int l = 0; l < 16; l++) lane[l] = 0.0;
    for (uint c = 0u; c < cols; c++) lane[c & 15u] = fmaf_(wval(wrow, c), x[xo + c], lane[c & 15u]);
    [[unroll]] for (int h = 8; h >= 1; h >>= 1)
        [[unroll]] for (int i = 0; i < h; i++) lane[i] = lane[i] + lane[i + h];
    return lane[0];
}
#else
float dot_row(uint wrow, uint t) {
    uint cols = pc.u[1];
    precise float acc = 0.0;
#if WT == 8 || WT == 2
    uint nb = cols / 32u, rec = pc.u[11] + t * nb * 10u;
    for (uint b = 0u; b < nb; b++, rec += 10u) {
        float xd = uintBitsToFloat(xq[rec]);
        int isum = 0;
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
        precise float dd = half_to_float(rd16(o)) * xd;
        acc = fmaf_(dd, float(isum), acc);
    }
#elif WT == 12
    uint nb = cols / 256u, rec = pc.u[11] + t * nb * 89u;
    for (uint b = 0u; b < nb; b++, rec += 89u) {
        float xd = uintBitsToFloat(xq[rec]);
        uint o = wrow + b * 144u, so = o + 4u, qo = o + 16u;
        int isa = 0, ism = 0;
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
            isa += sc * dot;
            ism += m * int(xq[rec + 17u + j]);
        }
        precise float d1 = half_to_float(rd16(o)) * xd;
        acc = fmaf_(d1, float(isa), acc);
        precise float d2 = -(half_to_float(rd16(o + 2u)) * xd);
        acc = fmaf_(d2, float(ism), acc);
    }
#elif WT == 14
    uint nb = cols / 256u, rec = pc.u[11] + t * nb * 89u;
    for (uint b = 0u; b < nb; b++, rec += 89u) {
        float xd = uintBitsToFloat(xq[rec]);
        uint o = wrow + b * 210u;
        int isum = 0;
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
        precise float dd = half_to_float(rd16(o + 208u)) * xd;
        acc = fmaf_(dd, float(isum), acc);
    }
#endif
    return acc;
}
#endif

void main() {
    uint r = gl_GlobalInvocationID.x, t = gl_GlobalInvocationID.y;
    if (r >= pc.u[0] || t >= pc.u[2]) return;
    float acc = dot_row(pc.u[9] + r * pc.u[8], t);
    precise float v = pc.u[3] != 0u ? acc + bias[pc.u[10] + r] : acc;
    y[pc.u[4] + t * pc.u[5] + r] = v;
}
