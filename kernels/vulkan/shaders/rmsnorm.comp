#version 450
// rmsnorm.comp - kern_rmsnorm_scalar per token: one workgroup of 16, thread l
// sums lane l of kern_dot16_ref(x, x), the tree 8,4,2,1, then
// scale = 1 / sqrt(ss / n + eps) correctly rounded, y = (x * scale) * w.
// pc: 0 n, 1 n_tokens, 2 x offset, 3 x stride, 4 y offset, 5 y stride,
//     6 w offset, 7 eps (float bits). y may be x.
#include "common.glsl"
layout(local_size_x = 16) in;
layout(std430, binding = 0) buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) readonly buffer Wt { float w[]; };
shared float lane[16];
shared float scale_sh;

void main() {
    uint l = gl_LocalInvocationID.x, t = gl_WorkGroupID.x, n = pc.u[0];
    uint xo = pc.u[2] + t * pc.u[3], yo = pc.u[4] + t * pc.u[5];
    precise float acc = 0.0;
    for (uint c = l; c < n; c += 16u) acc = fmaf_(x[xo + c], x[xo + c], acc);
    lane[l] = acc;
    barrier();
    if (l == 0u) {
        precise float v[16];
        for (int i = 0; i < 16; i++) v[i] = lane[i];
        [[unroll]] for (int h = 8; h >= 1; h >>= 1)
            [[unroll]] for (int i = 0; i < h; i++) v[i] = v[i] + v[i + h];
        precise float ms = div_rn(v[0], float(n)) + pcf(7);
        scale_sh = div_rn(1.0, sqrt_rn(ms));
    }
    barrier();
    float s = scale_sh;
    for (uint c = l; c < n; c += 16u) {
        precise float a = x[xo + c] * s;
        precise float b = a * w[pc.u[6] + c];
        y[yo + c] = b;
    }
}
