#version 450
// elem.comp - element-wise ops over count elements. OP 0: swiglu,
// y = gate / (1 + e^-gate) * up (kern_swiglu_scalar); OP 1: add, y = y + x.
// pc: 0 count, 1 y offset, 2 a offset (gate / x), 3 b offset (up)
#include "common.glsl"
layout(local_size_x = 64) in;
layout(std430, binding = 0) buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer A { float a[]; };
layout(std430, binding = 2) readonly buffer B { float b[]; };

void main() {
    uint i = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * 65536u;
    if (i >= pc.u[0]) return;
#if OP == 0
    float g = a[pc.u[2] + i];
    precise float den = 1.0 + expf_ref(-g);
    precise float v = div_rn(g, den) * b[pc.u[3] + i];
#else
    precise float v = y[pc.u[1] + i] + a[pc.u[2] + i];
#endif
    y[pc.u[1] + i] = v;
}
