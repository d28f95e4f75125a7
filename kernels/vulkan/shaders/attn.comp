#version 450
// attn.comp - kern_attention_head_scalar: one workgroup per (head, token).
// Threads i < 32 score a block's positions (kern_dot16_ref(q, k) * scale);
// every thread then runs the online softmax's scalar steps itself (the same
// values in each) for its output elements d = tid + 64k.
// pc: 0 n_head, 1 n_head_kv, 2 head_dim (<= 512), 3 row words, 4 f16 (1) or f32,
//     5 q offset, 6 q stride, 7 out offset, 8 out stride, 9 scale (float bits),
//     10 idx offset (per token: word offset of row 0 of its slot, n_pos)
#include "common.glsl"
layout(local_size_x = 64) in;
layout(std430, binding = 0) writeonly buffer O { float outv[]; };
layout(std430, binding = 1) readonly buffer Q { float q[]; };
layout(std430, binding = 2) readonly buffer K { uint kc[]; };
layout(std430, binding = 3) readonly buffer V { uint vc[]; };
layout(std430, binding = 4) readonly buffer I { uint idx[]; };
shared float sc[32];

float kval(uint word0, uint e) {
    if (pc.u[4] != 0u) {
        uint wv = kc[word0 + (e >> 1)];
        return half_to_float((e & 1u) != 0u ? wv >> 16 : wv & 0xFFFFu);
    }
    return uintBitsToFloat(kc[word0 + e]);
}
float vval(uint word0, uint e) {
    if (pc.u[4] != 0u) {
        uint wv = vc[word0 + (e >> 1)];
        return half_to_float((e & 1u) != 0u ? wv >> 16 : wv & 0xFFFFu);
    }
    return uintBitsToFloat(vc[word0 + e]);
}

void main() {
    uint h = gl_WorkGroupID.x, t = gl_WorkGroupID.y, tid = gl_LocalInvocationID.x;
    uint hd = pc.u[2], group = pc.u[0] / pc.u[1], kvh = h / group;
    uint base = idx[pc.u[10] + 2u * t], n_pos = idx[pc.u[10] + 2u * t + 1u];
    uint qo = pc.u[5] + t * pc.u[6] + h * hd, oo = pc.u[7] + t * pc.u[8] + h * hd;
    uint eoff = kvh * hd; // element offset of this kv head in a row
    float scale = pcf(9);
    precise float o[8];
    for (int k = 0; k < 8; k++) o[k] = 0.0;
    precise float m = 0.0, l = 0.0;
    bool first = true;
    for (uint p0 = 0u; p0 < n_pos; p0 += 32u) {
        uint nb = min(n_pos - p0, 32u);
        if (tid < nb) {
            uint row = base + (p0 + tid) * pc.u[3];
            precise float lane[16];
            [[unroll]] for (int i = 0; i < 16; i++) lane[i] = 0.0;
            for (uint c = 0u; c < hd; c++) lane[c & 15u] = fmaf_(q[qo + c], kval(row, eoff + c), lane[c & 15u]);
            [[unroll]] for (int hh = 8; hh >= 1; hh >>= 1)
                [[unroll]] for (int i = 0; i < hh; i++) lane[i] = lane[i] + lane[i + hh];
            precise float s = lane[0] * scale;
            sc[tid] = s;
        }
        barrier();
        float bmax = sc[0];
        for (uint i = 1u; i < nb; i++)
            if (sc[i] > bmax) bmax = sc[i];
        float mn = first ? bmax : (m > bmax ? m : bmax);
        if (!first) {
            precise float dm = m - mn;
            float c = expf_ref(dm);
            l = l * c;
            for (uint k = 0u; k < 8u; k++) o[k] = o[k] * c;
        }
        for (uint i = 0u; i < nb; i++) {
            precise float ds = sc[i] - mn;
            float e = expf_ref(ds);
            l = l + e;
            uint row = base + (p0 + i) * pc.u[3];
            for (uint k = 0u; k < 8u; k++) {
                uint d = tid + 64u * k;
                if (d < hd) o[k] = fmaf_(e, vval(row, eoff + d), o[k]);
            }
        }
        m = mn;
        first = false;
        barrier();
    }
    for (uint k = 0u; k < 8u; k++) {
        uint d = tid + 64u * k;
        if (d < hd) outv[oo + d] = div_rn(o[k], l);
    }
}
