/* Pointwise convolutions on our AVX-512 GEMM (blis_pointwise.inc, typed for
 * f32 and f64), behind the entry points of blis_pointwise.h. BLIS 0.9's
 * kernels on Zen are AVX2, half the machine's f32 peak, and its GEMMs need
 * the batch copied channel-major first; these kernels gather the columns of
 * several images while packing and write NCHW outputs directly.
 * docs/backend-blis.md has the measurements. */
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "blis_pointwise.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define BLIS_HAVE_POINTWISE 1
#include "blis_vec512.h" /* BLIS_AVX512_TARGET */
#else
#define BLIS_HAVE_POINTWISE 0
#endif

/* Register tiles: PW_ROWS output channels x PW_VECS vectors of columns
 * (24 accumulators of the 32 registers; 8 rows divide every MobileNet
 * channel count). The filter gradient's columns are input channels, so its
 * tile is PW_FILTER_VECS vectors wide (whole vectors of MobileNet's 32+
 * channels). */
#define PW_ROWS 8
#define PW_VECS 3
#define PW_FILTER_ROWS 12
#define PW_FILTER_VECS 2
#define PW_MAX_ROWS 16
#define PW_MAX_VECS 4
/* Columns per packed chunk of B at most (bounds the per-chunk store plan). */
#define PW_MAX_CHUNK 1024
/* A packed chunk of B (kd x chunk) sized to stay in a Zen 5 core's 1 MB L2
 * while every row panel of A passes over it. */
#define PW_CHUNK_BYTES (512 * 1024)
/* The filter gradient's per-chunk copies of x and dy and x's panels (2 MB:
 * chunks of 336 columns at 512 channels, where 80-column ones ran 10-15%
 * slower), and its most columns per chunk. */
#define PW_FILTER_CHUNK_BYTES (2048 * 1024)
#define PW_FILTER_MAX_CHUNK 512
/* Fewest columns worth a thread of its own in the filter gradient (each
 * thread also adds a K x C partial sum). */
#define PW_FILTER_MIN_COLS 64
/* Under this many multiply-adds one thread: waking another costs more. */
#define PW_SMALL_WORK (1L << 18)
/* Outputs from this size on are stored past the caches: half of a Zen 5
 * CCD's 32 MB L3, beyond which little of them would still be there for the
 * next op, while write-allocating them doubled the memory traffic of the
 * large-plane layers (MobileNet's 32x32 forward: 2.5 ms with cached
 * stores, 1.8 ms streamed). */
#define PW_STREAM_BYTES (16L << 20)
/* Column panels per thread from which the data pass packs W^T (else read
 * in place: packing costs a pass over the weights, which one image of 2x2
 * or 4x4 planes does not recover). */
#define PW_PACK_A_PANELS 3
/* k steps of a tile between software prefetches (pw_prefetch). */
#define PW_PREFETCH_STEP 8

/* out[M, cols] = A[M, kd] B[kd, cols] over the batch's columns, A(m, k) =
 * w[m*w_rs + k*w_cs]. */
typedef struct pw_gemm {
    long m, kd, plane, cols;
    long w_rs, w_cs;
    int pack_a;          /* A packed first, else read in place */
    long panels;         /* row panels of PW_ROWS */
    long chunk;          /* columns per packed chunk: whole column panels */
    long chunks, splits; /* column chunks; row-panel ranges per chunk (work items) */
    int stream;          /* whole aligned output vectors bypass the caches */
    int add;             /* out += A B instead of = */
} pw_gemm;

/* Scratch: packed B at the start of every thread's (per_thread bytes),
 * packed A in thread 0's after it (at packed_a, up to thread0 bytes). */
typedef struct pw_layout {
    size_t per_thread, packed_a, thread0;
} pw_layout;

/* dW[K, C] over column chunks; byte offsets into each thread's scratch. */
typedef struct pw_filter {
    long k, c, plane, cols;
    long chunk; /* columns per chunk */
    long ls;    /* row stride of the channel-major copies (values) */
    size_t xs, ds, bp, part, total;
} pw_filter;

static long pw_round_up(long value, long multiple) {
    return (value + multiple - 1) / multiple * multiple;
}

#if BLIS_HAVE_POINTWISE
/* Fetches the input of a thread's next chunk of columns into L2 a few
 * lines at a time, from inside the current chunk's tiles (every
 * PW_PREFETCH_STEP steps of their k loops; in bursts between tiles they
 * stalled the multiply as the misses queued up): otherwise every
 * chunk's copy waits on memory with the multiply units idle, which on the
 * large planes (whose inputs come from DRAM) took about as long as the
 * multiply. The chunk is columns [col0, col0 + count) of an
 * [N][rows][plane] tensor: per image, one block when the chunk covers the
 * whole image, else one run of pixels per row. */
typedef struct pw_prefetch {
    const char *in;
    long es, rows, plane;
    long n, k;              /* the run being fetched: image, row */
    long n_first, n_last;   /* the chunk's images */
    long lo_first, hi_last; /* pixel range in the first and the last image */
    long at, end;           /* byte offsets of the next line and of the run's end */
    long per_call;          /* lines per pw_prefetch_lines */
} pw_prefetch;

/* Points at the run of image p->n (row p->k unless the image is whole);
 * at == end past the last image. */
static inline __attribute__((always_inline)) void pw_prefetch_run(pw_prefetch *p) {
    if (p->n > p->n_last) {
        p->at = p->end = 0;
        return;
    }
    const long lo = p->n == p->n_first ? p->lo_first : 0;
    const long hi = p->n == p->n_last ? p->hi_last : p->plane;
    long start;
    if (lo == 0 && hi == p->plane) {
        p->k = p->rows - 1; /* the block covers every row */
        start = p->n * p->rows * p->plane * p->es;
        p->end = start + p->rows * p->plane * p->es;
    } else {
        start = ((p->n * p->rows + p->k) * p->plane + lo) * p->es;
        p->end = start + (hi - lo) * p->es;
    }
    p->at = start & ~63L; /* whole lines, from the one holding the first value */
}

/* The next chunk, to be fetched over `calls` calls of pw_prefetch_lines. */
static void pw_prefetch_start(pw_prefetch *p, const void *in, size_t es, long rows, long plane,
                              long col0, long count, long calls) {
    *p = (pw_prefetch){.in = in, .es = (long)es, .rows = rows, .plane = plane};
    if (count <= 0) return; /* at == end: nothing to fetch */
    p->n_first = p->n = col0 / plane;
    p->lo_first = col0 % plane;
    p->n_last = (col0 + count - 1) / plane;
    p->hi_last = (col0 + count - 1) % plane + 1;
    const long lines = rows * count * (long)es / 64 + (p->n_last - p->n_first + 1) * rows;
    p->per_call = lines / (calls > 0 ? calls : 1) + 1;
    pw_prefetch_run(p);
}

/* Inlined into the tiles' k loops: a call there would make the compiler
 * save the accumulators around it. */
static inline __attribute__((always_inline)) void pw_prefetch_lines(pw_prefetch *p) {
    for (long left = p->per_call; left > 0 && p->at < p->end; left--) {
        _mm_prefetch(p->in + p->at, _MM_HINT_T1);
        p->at += 64;
        if (p->at >= p->end) { /* on to the next run */
            if (++p->k == p->rows) {
                p->k = 0;
                p->n++;
            }
            pw_prefetch_run(p);
        }
    }
}

/* dst[j*ldd + i] = src[i*lds + j] for a 16 x 16 block; source rows at or
 * past `rows` read as zeros. Four rounds of in-register shuffles. */
BLIS_AVX512_TARGET
static void pw_transpose_f32(const float *src, long lds, long rows, float *dst, long ldd) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++)
        r[i] = i < rows ? _mm512_loadu_ps(src + i * lds) : _mm512_setzero_ps();
    /* t[2i], t[2i+1]: rows 2i, 2i+1 interleaved (columns 4L, 4L+1 / 4L+2, 4L+3 of lane L) */
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* r[4g + c]: column 4L + c of rows 4g..4g+3 in lane L */
    for (int g = 0; g < 4; g++) {
        const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
        const __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
        r[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    /* gather lane L of r[c], r[4+c], r[8+c], r[12+c] into column 4L + c */
    for (int c = 0; c < 4; c++) {
        const __m512 v0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);
        const __m512 v1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);
        const __m512 w0 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
        const __m512 w1 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
        _mm512_storeu_ps(dst + c * ldd, _mm512_shuffle_f32x4(v0, w0, 0x88));
        _mm512_storeu_ps(dst + (4 + c) * ldd, _mm512_shuffle_f32x4(v1, w1, 0x88));
        _mm512_storeu_ps(dst + (8 + c) * ldd, _mm512_shuffle_f32x4(v0, w0, 0xdd));
        _mm512_storeu_ps(dst + (12 + c) * ldd, _mm512_shuffle_f32x4(v1, w1, 0xdd));
    }
}

/* The same for an 8 x 8 block of doubles. */
BLIS_AVX512_TARGET
static void pw_transpose_f64(const double *src, long lds, long rows, double *dst, long ldd) {
    __m512d r[8], t[8];
    for (int i = 0; i < 8; i++)
        r[i] = i < rows ? _mm512_loadu_pd(src + i * lds) : _mm512_setzero_pd();
    /* t[2i + c]: column 2L + c of rows 2i, 2i+1 in lane L */
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);
    }
    for (int c = 0; c < 2; c++) {
        const __m512d v0 = _mm512_shuffle_f64x2(t[c], t[2 + c], 0x88);
        const __m512d v1 = _mm512_shuffle_f64x2(t[c], t[2 + c], 0xdd);
        const __m512d w0 = _mm512_shuffle_f64x2(t[4 + c], t[6 + c], 0x88);
        const __m512d w1 = _mm512_shuffle_f64x2(t[4 + c], t[6 + c], 0xdd);
        _mm512_storeu_pd(dst + c * ldd, _mm512_shuffle_f64x2(v0, w0, 0x88));
        _mm512_storeu_pd(dst + (2 + c) * ldd, _mm512_shuffle_f64x2(v1, w1, 0x88));
        _mm512_storeu_pd(dst + (4 + c) * ldd, _mm512_shuffle_f64x2(v0, w0, 0xdd));
        _mm512_storeu_pd(dst + (6 + c) * ldd, _mm512_shuffle_f64x2(v1, w1, 0xdd));
    }
}

#define BLIS_VEC512_DOUBLE 0
#include "blis_vec512.h"
#include "blis_pointwise.inc"
#undef BLIS_VEC512_DOUBLE
#define BLIS_VEC512_DOUBLE 1
#include "blis_vec512.h"
#include "blis_pointwise.inc"
#undef BLIS_VEC512_DOUBLE
#include "blis_vec512.h" /* undefines its macros */
#endif

int blis_pointwise_cpu_supported(void) {
#if BLIS_HAVE_POINTWISE
    return blis_cpu_has_avx512f();
#else
    return 0;
#endif
}

int blis_pointwise_available(const blis_backend *be, const conv_geometry *g, nnopt_dtype dtype,
                             blis_pointwise_pass pass) {
    const long lanes = dtype == NNOPT_F32 ? 16 : 8;
    const int enough_columns = pass == BLIS_POINTWISE_FILTER || g->n * g->p * g->q >= 2 * lanes;
    return be->pointwise_avx512 && g->groups == 1 && g->r == 1 && g->s == 1 && g->stride_h == 1 &&
           g->stride_w == 1 && g->pad_h == 0 && g->pad_w == 0 && enough_columns;
}

/* The plan of out[m, cols] = A[m, kd] B[kd, cols] on up to `threads`;
 * data_pass: A is the transpose of w ([kd][m]), else w itself ([m][kd]). */
static int pw_gemm_make(long m, long kd, long plane, long cols, int data_pass, size_t es,
                        int threads, pw_gemm *pg, pw_layout *lay) {
    const long nr = PW_VECS * (long)(64 / es);
    const int team = m * kd * cols < PW_SMALL_WORK ? 1 : threads;
    long chunk = (long)(PW_CHUNK_BYTES / es) / kd / nr * nr;
    if (chunk > PW_MAX_CHUNK / nr * nr) chunk = PW_MAX_CHUNK / nr * nr;
    /* at least one chunk per thread */
    const long per_thread = pw_round_up((cols + team - 1) / team, nr);
    if (chunk > per_thread) chunk = per_thread;
    if (chunk < nr) chunk = nr;
    *pg = (pw_gemm){.m = m, .kd = kd, .plane = plane, .cols = cols};
    pg->w_rs = data_pass ? 1 : kd;
    pg->w_cs = data_pass ? m : 1;
    /* The forward pass reads W's rows in place (as fast as packed panels
     * at every MobileNet shape and batch measured, and no pass over W). */
    pg->pack_a = data_pass && cols >= PW_PACK_A_PANELS * nr * team;
    pg->panels = (m + PW_ROWS - 1) / PW_ROWS;
    pg->chunk = chunk;
    pg->chunks = (cols + chunk - 1) / chunk;
    /* Few chunks that do not divide evenly: every thread takes part of
     * every chunk's row panels instead. */
    const int uneven = pg->chunks < 4 * team && pg->chunks % team != 0;
    pg->splits = uneven ? (pg->panels < team ? pg->panels : team) : 1;
    pg->stream = m * cols * (long)es >= PW_STREAM_BYTES;
    lay->per_thread = blis_align64((size_t)(kd * chunk) * es);
    lay->packed_a = lay->per_thread;
    lay->thread0 = lay->packed_a + (size_t)(pg->panels * PW_ROWS * kd) * es;
    return team;
}

static nnopt_status pw_gemm_pass(blis_backend *be, long m, long kd, const conv_geometry *g,
                                 nnopt_dtype dtype, int data_pass, const void *w, const void *in,
                                 const void *bias, int relu, int add, void *out) {
#if BLIS_HAVE_POINTWISE
    const size_t es = dtype == NNOPT_F32 ? sizeof(float) : sizeof(double);
    const long plane = g->p * g->q, cols = g->n * plane;
    if (cols == 0 || m == 0) return NNOPT_OK;
    pw_gemm pg;
    pw_layout lay;
    const int team = pw_gemm_make(m, kd, plane, cols, data_pass, es, be->threads, &pg, &lay);
    pg.add = add;
    nnopt_status st = blis_scratch_reserve(be, 1, pg.pack_a ? lay.thread0 : lay.per_thread);
    if (st == NNOPT_OK) st = blis_scratch_reserve(be, team, lay.per_thread);
    if (st != NNOPT_OK) return st;
    if (dtype == NNOPT_F32)
        pw_gemm_run_f32(&pg, &lay, w, in, bias, relu, out, be->scratch, team);
    else
        pw_gemm_run_f64(&pg, &lay, w, in, bias, relu, out, be->scratch, team);
    return NNOPT_OK;
#else
    (void)be, (void)m, (void)kd, (void)g, (void)dtype, (void)data_pass, (void)w, (void)in,
        (void)bias, (void)relu, (void)add, (void)out;
    return NNOPT_STATUS_UNSUPPORTED;
#endif
}

nnopt_status blis_pointwise_forward(blis_backend *be, const conv_geometry *g, nnopt_dtype dtype,
                                    const void *x, const void *w, const void *bias, int relu,
                                    void *y) {
    return pw_gemm_pass(be, g->k, g->c, g, dtype, 0, w, x, bias, relu, 0, y);
}

nnopt_status blis_pointwise_backward_data(blis_backend *be, const conv_geometry *g,
                                          nnopt_dtype dtype, const void *dy, const void *w, int add,
                                          void *dx) {
    return pw_gemm_pass(be, g->c, g->k, g, dtype, 1, w, dy, NULL, 0, add, dx);
}

static int pw_filter_make(const conv_geometry *g, size_t es, int threads, pw_filter *pf) {
    const long lanes = (long)(64 / es), nr = PW_FILTER_VECS * lanes;
    *pf = (pw_filter){.k = g->k, .c = g->c, .plane = g->p * g->q};
    pf->cols = g->n * pf->plane;
    long team = pf->cols / PW_FILTER_MIN_COLS;
    if (pf->k * pf->c * pf->cols < PW_SMALL_WORK) team = 1;
    team = team < 1 ? 1 : team > threads ? threads : team;
    const long c_padded = pw_round_up(pf->c, nr);
    long chunk = (long)(PW_FILTER_CHUNK_BYTES / es) / (pf->c + pf->k + c_padded) / lanes * lanes;
    chunk = chunk < 4 * lanes             ? 4 * lanes
            : chunk > PW_FILTER_MAX_CHUNK ? PW_FILTER_MAX_CHUNK
                                          : chunk;
    const long per_thread = pw_round_up((pf->cols + team - 1) / team, lanes);
    pf->chunk = chunk < per_thread ? chunk : per_thread;
    /* a vector of slack: rows a multiple of 4 KB apart would share L1 sets */
    pf->ls = pw_round_up(pf->chunk, lanes) + lanes;
    pf->xs = 0;
    pf->ds = pf->xs + blis_align64((size_t)(pf->c * pf->ls) * es);
    pf->bp = pf->ds + blis_align64((size_t)(pf->k * pf->ls) * es);
    pf->part = pf->bp + blis_align64((size_t)(c_padded * pf->ls) * es);
    pf->total = pf->part + (team > 1 ? (size_t)(pf->k * pf->c) * es : 0);
    return (int)team;
}

nnopt_status blis_pointwise_backward_filter(blis_backend *be, const conv_geometry *g,
                                            nnopt_dtype dtype, const void *x, const void *dy,
                                            void *dw) {
    const size_t es = dtype == NNOPT_F32 ? sizeof(float) : sizeof(double);
    if (g->n * g->p * g->q == 0) {
        memset(dw, 0, (size_t)(g->k * g->c) * es);
        return NNOPT_OK;
    }
#if BLIS_HAVE_POINTWISE
    pw_filter pf;
    const int team = pw_filter_make(g, es, be->threads, &pf);
    nnopt_status st = blis_scratch_reserve(be, team, pf.total);
    if (st != NNOPT_OK) return st;
    if (dtype == NNOPT_F32)
        pw_filter_run_f32(&pf, x, dy, dw, be->scratch, team);
    else
        pw_filter_run_f64(&pf, x, dy, dw, be->scratch, team);
    return NNOPT_OK;
#else
    (void)be, (void)x, (void)dy;
    return NNOPT_STATUS_UNSUPPORTED;
#endif
}
