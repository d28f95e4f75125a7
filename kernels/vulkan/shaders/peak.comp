#version 450
// peak.comp - int32 multiply-add throughput, the arithmetic the quantized
// matmul's block sums run on: 8 independent chains of 256 steps per
// invocation (2 ops each), one word out so nothing is dropped. pc: 0 seed
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer O { int outv[]; };
void main() {
    int a[8];
    int s = int(pc.u[0]) + int(gl_GlobalInvocationID.x);
    for (int k = 0; k < 8; k++) a[k] = s + k;
    for (int i = 0; i < 256; i++)
        [[unroll]] for (int k = 0; k < 8; k++) a[k] = a[k] * 3 + s;
    int r = 0;
    for (int k = 0; k < 8; k++) r += a[k];
    outv[gl_GlobalInvocationID.x] = r;
}
