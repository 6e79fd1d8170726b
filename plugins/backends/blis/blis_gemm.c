/* The one place that calls BLIS's GEMM: typed API with explicit strides and a
 * per-call runtime object, so every call says how many threads it may use
 * (BLIS's global thread count is never touched). */
#include <blis.h>

#include "blis_internal.h"

void blis_gemm(nnopt_dtype dtype, int threads, long m, long n, long k, blis_matrix a, blis_matrix b,
               double beta, void *c, long rs_c, long cs_c) {
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(threads > 0 ? threads : 1, &rntm);
    /* BLIS's typed API takes non-const operands but only reads A and B. */
    if (dtype == NNOPT_F32) {
        float one = 1.0f, beta_f = (float)beta;
        bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &one, (float *)a.data, a.rs,
                     a.cs, (float *)b.data, b.rs, b.cs, &beta_f, c, rs_c, cs_c, NULL, &rntm);
    } else {
        double one = 1.0;
        bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &one, (double *)a.data, a.rs,
                     a.cs, (double *)b.data, b.rs, b.cs, &beta, c, rs_c, cs_c, NULL, &rntm);
    }
}
