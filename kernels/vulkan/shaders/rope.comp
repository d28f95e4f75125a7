#version 450
// rope.comp - NeoX rotation with the host's cos/sin table (kern_rope_table):
// v[i] = x0*c - x1*s, v[i+half] = x0*s + x1*c, each product rounded.
// Invocation (i + half*h, t). pc: 0 n_heads, 1 head_dim, 2 n_tokens,
// 3 x offset, 4 x stride, 5 table offset (floats; per token [c[half], s[half]])
#include "common.glsl"
layout(local_size_x = 64) in;
layout(std430, binding = 0) buffer Xb { float x[]; };
layout(std430, binding = 1) readonly buffer T { float cs[]; };

void main() {
    uint half_ = pc.u[1] / 2u, g = gl_GlobalInvocationID.x, t = gl_GlobalInvocationID.y;
    if (g >= half_ * pc.u[0] || t >= pc.u[2]) return;
    uint i = g % half_, h = g / half_;
    uint o = pc.u[3] + t * pc.u[4] + h * pc.u[1] + i, to = pc.u[5] + t * 2u * half_;
    float c = cs[to + i], s = cs[to + half_ + i];
    float x0 = x[o], x1 = x[o + half_];
    precise float a = x0 * c, b = x1 * s, e = x0 * s, f = x1 * c;
    precise float r0 = a - b, r1 = e + f;
    x[o] = r0;
    x[o + half_] = r1;
}
