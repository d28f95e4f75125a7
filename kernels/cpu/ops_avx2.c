/* ops_avx2.c - the AVX2+FMA level: the float dot (same 16-lane definition as
 * kern_dot16_ref: two 8-lane accumulators = lanes 0-7 and 8-15) and the residual
 * add. The other operations of this level run the scalar reference (see ops.c). */
#include <immintrin.h>

#include "ops_internal.h"

float kern_dot16_avx2(const float *a, const float *b, int64_t n) {
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= n; c += 16) {
        lo = _mm256_fmadd_ps(_mm256_loadu_ps(a + c), _mm256_loadu_ps(b + c), lo);
        hi = _mm256_fmadd_ps(_mm256_loadu_ps(a + c + 8), _mm256_loadu_ps(b + c + 8), hi);
    }
    float lane[16];
    _mm256_storeu_ps(lane, lo);
    _mm256_storeu_ps(lane + 8, hi);
    for (int64_t i = c; i < n; i++) {
        float *l = &lane[i - c];
        *l = __builtin_fmaf(a[i], b[i], *l);
    }
    for (int h = 8; h >= 1; h >>= 1)
        for (int i = 0; i < h; i++) lane[i] = lane[i] + lane[i + h];
    return lane[0];
}

void kern_add_avx2(float *y, const float *x, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
    for (; i < n; i++) y[i] = y[i] + x[i];
}
