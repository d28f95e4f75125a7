// common.glsl - what every Baton compute shader shares: the push-constant
// block, byte reads from uint buffers, exact f16 conversions in integers, and
// the float steps of the scalar reference (kernels/ops_scalar.c) that a GPU
// does not round as C does unless told: division and square root correctly
// rounded by an exact residual check, e^x as kern_expf_ref. Every float result
// is `precise` (SPIR-V NoContraction): no multiply-add is fused unless the
// reference fuses it (fmaf_()).
#extension GL_EXT_control_flow_attributes : enable

// The generic push constants: 24 words, their meaning per shader.
layout(push_constant) uniform PC { uint u[24]; } pc;
float pcf(int i) { return uintBitsToFloat(pc.u[i]); }

// f16 bits -> f32, exact (subnormal halves become normal floats).
float half_to_float(uint h) {
    uint s = (h & 0x8000u) << 16, e = (h >> 10) & 31u, m = h & 0x3FFu;
    if (e == 31u) return uintBitsToFloat(s | 0x7F800000u | (m << 13));
    if (e == 0u) {
        if (m == 0u) return uintBitsToFloat(s);
        int k = findMSB(m); // value m * 2^-24, m < 1024
        return uintBitsToFloat(s | (uint(k + 103) << 23) | ((m << (23 - k)) & 0x7FFFFFu));
    }
    return uintBitsToFloat(s | ((e + 112u) << 23) | (m << 13));
}

// f32 -> f16 bits, round to nearest even: quant.c's f32_to_fp16, step for step.
uint float_to_half(float f) {
    uint u = floatBitsToUint(f);
    uint sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return sign | 0x7E00u | ((a >> 13) & 0x3FFu);
    if (a >= 0x47800000u) return sign | 0x7C00u;
    int e = int(a >> 23) - 127;
    uint man = (a & 0x7FFFFFu) | 0x800000u, shift, base;
    if (e >= -14) {
        shift = 13u;
        base = uint(e + 14) << 10;
    } else {
        if (e < -25) return sign;
        shift = uint(-1 - e);
        base = 0u;
    }
    uint q = man >> shift, rem = man & ((1u << shift) - 1u), hf = 1u << (shift - 1u);
    if (rem > hf || (rem == hf && (q & 1u) != 0u)) q++;
    return sign | (base + q);
}

// SOFT_FMA (set by the host after its probe, gpu_vk.c): the device's fmaf_() is
// not one rounding (lavapipe lowers it to a multiply and an add), so fmaf_ is
// computed from exact pieces: a*b = uh + ul (Dekker's product, Veltkamp split
// by 4097), c + uh = th + tl (Knuth's two-sum), v = tl + ul rounded to odd,
// result th + v rounded to nearest: the correctly rounded a*b + c (Boldo and
// Melquiond, "Emulation of FMA and correctly rounded sums: proved algorithms
// using rounding to odd", IEEE TC 2008), for |a|, |b| below 2^100 and results
// that do not underflow.
layout(constant_id = 0) const bool SOFT_FMA = false;

float step_ulp(float q, bool up);

void two_sum(float a, float b, out float s, out float e) {
    precise float s_ = a + b;
    precise float bb = s_ - a;
    precise float e_ = (a - (s_ - bb)) + (b - bb);
    s = s_;
    e = e_;
}

void two_prod(float a, float b, out float p, out float e) {
    precise float p_ = a * b;
    precise float ta = 4097.0 * a, tb = 4097.0 * b;
    precise float ah = ta - (ta - a), bh = tb - (tb - b);
    precise float al = a - ah, bl = b - bh;
    precise float e_ = (((ah * bh - p_) + ah * bl) + al * bh) + al * bl;
    p = p_;
    e = e_;
}

float fmaf_(float a, float b, float c) {
    if (!SOFT_FMA) {
        precise float r = fma(a, b, c);
        return r;
    }
    float uh, ul, th, tl, s, e;
    two_prod(a, b, uh, ul);
    if (isinf(uh) || isnan(uh)) {
        precise float r = uh + c;
        return r;
    }
    two_sum(c, uh, th, tl);
    two_sum(tl, ul, s, e);
    if (e != 0.0 && (floatBitsToUint(s) & 1u) == 0u) s = step_ulp(s, e > 0.0);
    precise float r = th + s;
    return r;
}

// One ulp from q toward +inf (up) or -inf, q finite.
float step_ulp(float q, bool up) {
    if (q == 0.0) return uintBitsToFloat(up ? 1u : 0x80000001u);
    uint b = floatBitsToUint(q);
    return uintBitsToFloat((up == (q > 0.0)) ? b + 1u : b - 1u);
}

// a / b correctly rounded: the device's quotient (Vulkan allows 2.5 ulp), then
// the neighbour with the smaller exact residual |a - q*b| (fma is exact for a
// q this close) until none is smaller. Ties cannot occur for a quotient.
float div_rn(float a, float b) {
    precise float q = a / b;
    if (isnan(q) || isinf(q) || isinf(b) || b == 0.0) return q;
    [[dont_unroll]] for (int i = 0; i < 4; i++) {
        precise float r = fmaf_(-q, b, a);
        if (r == 0.0) break;
        float c = step_ulp(q, (r > 0.0) == (b > 0.0));
        precise float rc = fmaf_(-c, b, a);
        if (!(abs(rc) < abs(r))) break;
        q = c;
    }
    return q;
}

// sqrt(x) correctly rounded: with r = x - s^2 exact (fma), s is right iff
// -s*ulp_below < r <= s*ulp_above (the midpoints' squares, see the README).
float sqrt_rn(float x) {
    precise float s = sqrt(x);
    if (!(x > 0.0) || isinf(x)) return s;
    [[dont_unroll]] for (int i = 0; i < 4; i++) {
        precise float r = fmaf_(-s, s, x);
        float up = uintBitsToFloat(floatBitsToUint(s) + 1u), dn = uintBitsToFloat(floatBitsToUint(s) - 1u);
        precise float hi = s * (up - s);
        precise float lo = -(s * (s - dn));
        if (r > hi) s = up;
        else if (r <= lo) s = dn;
        else break;
    }
    return s;
}

// kern_expf_ref, operation for operation.
float expf_ref(float x) {
    if (isnan(x)) return x;
    if (!(x >= -87.3)) return 0.0;
    if (x > 88.3) x = 88.3;
    precise float t = x * 1.44269504088896341;
    float n = roundEven(t);
    precise float r = fmaf_(-n, 0.693145751953125, x);
    r = fmaf_(-n, 1.42860682030941723212e-6, r);
    precise float p = uintBitsToFloat(0x39500d01u); // 1.0f / 5040.0f
    p = fmaf_(p, r, uintBitsToFloat(0x3ab60b61u));     // 1/720
    p = fmaf_(p, r, uintBitsToFloat(0x3c088889u));     // 1/120
    p = fmaf_(p, r, uintBitsToFloat(0x3d2aaaabu));     // 1/24
    p = fmaf_(p, r, uintBitsToFloat(0x3e2aaaabu));     // 1/6
    p = fmaf_(p, r, 0.5);
    p = fmaf_(p, r, 1.0);
    p = fmaf_(p, r, 1.0);
    precise float res = p * uintBitsToFloat(uint(int(n) + 127) << 23);
    return res;
}
