#version 450
// copy.comp - dst = src, 4 words per invocation: the bandwidth probe of
// baton-bench gpu. pc: 0 words (a multiple of 4)
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer D { uvec4 dst[]; };
layout(std430, binding = 1) readonly buffer S { uvec4 src[]; };
void main() {
    uint i = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * 65535u * 256u;
    if (i < pc.u[0] / 4u) dst[i] = src[i];
}
