/* kquant_avx512.c - the AVX-512 level's quantized FAST matmul for Q2_K, Q3_K
 * and Q5_K weights: kern_mm_rows_kq_avx512, picked by avx512_mm_rows, runs
 * AVX2's 8-row tiles (kquant_avx2.c says why), the same bits as scalar.
 */
#include "ops_internal.h"

void kern_mm_rows_kq_avx512(const kern_mm_job *j, int64_t r0, int64_t r1) { kern_mm_rows_kq_avx2(j, r0, r1); }
