#version 450
// kvstore.comp - kern_store_row for f32 and f16 cache rows: token t's K and V
// (floats) into the rows whose first word idx[t] names. One invocation per
// word: 2 halves (f16, round to nearest even as quant.c) or 1 float.
// pc: 0 words per row, 1 n_tokens, 2 k offset, 3 v offset, 4 src stride,
//     5 f16 (1) or f32 (0), 6 idx offset
#include "common.glsl"
layout(local_size_x = 64) in;
layout(std430, binding = 0) buffer K { uint kc[]; };
layout(std430, binding = 1) buffer V { uint vc[]; };
layout(std430, binding = 2) readonly buffer KS { float ks[]; };
layout(std430, binding = 3) readonly buffer VS { float vs[]; };
layout(std430, binding = 4) readonly buffer I { uint idx[]; };

void main() {
    uint wi = gl_GlobalInvocationID.x, t = gl_GlobalInvocationID.y;
    if (wi >= pc.u[0] || t >= pc.u[1]) return;
    uint dst = idx[pc.u[6] + t] + wi, so = t * pc.u[4];
    if (pc.u[5] != 0u) {
        uint e = 2u * wi;
        kc[dst] = float_to_half(ks[pc.u[2] + so + e]) | (float_to_half(ks[pc.u[2] + so + e + 1u]) << 16);
        vc[dst] = float_to_half(vs[pc.u[3] + so + e]) | (float_to_half(vs[pc.u[3] + so + e + 1u]) << 16);
    } else {
        kc[dst] = floatBitsToUint(ks[pc.u[2] + so + wi]);
        vc[dst] = floatBitsToUint(vs[pc.u[3] + so + wi]);
    }
}
