#version 450
// probe.comp - r[i] = fmaf_(a[i], b[i], c[i]) and div_rn / sqrt_rn of a[i],
// b[i]: the host compares them with C's fmaf, / and sqrtf to choose SOFT_FMA
// and to refuse a device that still differs. pc: 0 count
#include "common.glsl"
layout(local_size_x = 64) in;
layout(std430, binding = 0) writeonly buffer R { float r[]; };
layout(std430, binding = 1) readonly buffer A { float a[]; };
layout(std430, binding = 2) readonly buffer B { float b[]; };
layout(std430, binding = 3) readonly buffer C { float c[]; };
void main() {
    uint i = gl_GlobalInvocationID.x, n = pc.u[0];
    if (i >= n) return;
    r[i] = fmaf_(a[i], b[i], c[i]);
    r[n + i] = div_rn(a[i], b[i]);
    r[2u * n + i] = sqrt_rn(abs(a[i]));
    r[3u * n + i] = expf_ref(c[i]);
}
