/* Kernel compilation, part 1: the code generator (see kc_codegen.h). */
#include "kc_codegen.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Register blocking: accumulators per micro-kernel (of 32 vector registers,
 * leaving room for the loaded inputs and the broadcast weight). */
#define KC_CONV_ACCUMULATORS 24
#define KC_CONV_MAX_VECTORS 4      /* output vectors per channel in a conv micro-kernel */
#define KC_DENSE_IMAGES 4          /* images per dense micro-kernel */
#define KC_DENSE_VECTORS 6         /* output vectors per dense micro-kernel */
#define KC_MAX_TILE 8              /* images per tile */
#define KC_TILE_BYTES (192 * 1024) /* a tile's intermediates should stay in L2 */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void emit(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int len = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (len < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && b->n + (size_t)len < b->cap) {
            b->n += (size_t)len;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 65536) + (size_t)len;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

enum { STEP_FALLBACK = 0, STEP_SPECIAL, STEP_ABSORBED };

typedef struct gen {
    const nnopt_program *prog;
    const unsigned char *leave; /* per step: left to the backend's run, or NULL */
    nnopt_dtype dt;
    int vl, threads;
    size_t esize;
    int *root, *consumers, *materialize, *producer;
    int *kind, *group;         /* per step */
    int *fused_bn, *fused_act; /* per head step: the absorbed step, or -1 */
    int *final_out;            /* per head step: the root its chain writes */
    size_t *shared_off;        /* per head step with a folded batch norm */
    size_t *pack_off;          /* per channel-vectorised conv: its packed weights */
    long *tile_off;            /* per root: byte offset in the tile area, or -1 */
    int *tile_images;          /* per group */
    size_t shared_bytes, tile_bytes, xp_bytes, tmp_bytes;
    int all_external; /* every value a step writes is read outside (training) */
    sbuf b;
} gen;

static const nnopt_program_tensor *tensor(const gen *g, int i) {
    return &g->prog->tensors[i];
}

static int64_t per_image(const gen *g, int i) {
    const nnopt_program_tensor *t = tensor(g, i);
    int64_t n = 1;
    for (int d = 1; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

static int same_dtype(const gen *g, const nnopt_program_step *s) {
    for (int k = 0; k < s->n_in; k++)
        if (tensor(g, s->in[k])->dtype != g->dt) return 0;
    for (int k = 0; k < s->n_out; k++)
        if (tensor(g, s->out[k])->dtype != g->dt) return 0;
    return 1;
}

/* The op a fused kind extends (conv2d_relu: conv2d, add_relu: add), else
 * the kind itself; the generator runs the relu as the last thing the step
 * does. conv2d_add_relu stays with the backend. */
static nnopt_op_kind base_kind(nnopt_op_kind kind) {
    return kind == NNOPT_OP_CONV2D_RELU ? NNOPT_OP_CONV2D
           : kind == NNOPT_OP_ADD_RELU  ? NNOPT_OP_ADD
                                        : kind;
}

static int relu_in_op(nnopt_op_kind kind) {
    return kind == NNOPT_OP_CONV2D_RELU || kind == NNOPT_OP_ADD_RELU;
}

/* Whether the generator has a per-image kernel for this step. */
static int can_specialize(const gen *g, const nnopt_program_step *s) {
    if ((s->flags & NNOPT_PROGRAM_STEP_DYNAMIC) || s->n_in < 1 || s->n_out != 1 ||
        !same_dtype(g, s))
        return 0;
    const nnopt_program_tensor *x = tensor(g, s->in[0]);
    /* With every value stored for backward there is nothing to fuse, and the
     * generated convolution and dense kernels were measured slower than the
     * backends' own on LeNet-5 training (0.77-0.99x): leave those to them. */
    int fusable = !g->all_external;
    switch (base_kind(s->op.kind)) {
    case NNOPT_OP_CONV2D:
        return fusable && (s->n_in == 2 || s->n_in == 3) && x->ndim == 4 &&
               s->op.p.conv2d.groups == 1 && s->op.p.conv2d.stride_h == 1 &&
               s->op.p.conv2d.stride_w == 1;
    case NNOPT_OP_DENSE:
        return fusable && (s->n_in == 2 || s->n_in == 3) &&
               per_image(g, s->in[0]) == tensor(g, s->in[1])->shape[1];
    case NNOPT_OP_POOL2D:
        return x->ndim == 4;
    case NNOPT_OP_ACT:
        return s->op.p.act.kind >= 0 && s->op.p.act.kind < NNOPT_ACT_KIND_COUNT;
    case NNOPT_OP_ADD:
        return s->n_in == 2;
    case NNOPT_OP_BATCHNORM:
        return !s->op.p.bn.training && s->n_in == 5 && x->ndim >= 2;
    default:
        return 0;
    }
}

static const char *act_fn(int kind) {
    static const char *const names[NNOPT_ACT_KIND_COUNT] = {
        "act_identity", "act_relu",    "act_gelu", "act_gelu_erf",
        "act_tanh",     "act_sigmoid", "act_relu6"};
    return kind >= 0 && kind < NNOPT_ACT_KIND_COUNT ? names[kind] : "act_identity";
}

/* ---- analysis ---- */

static void classify(gen *g) {
    const nnopt_program *p = g->prog;
    for (int i = 0; i < p->n_tensors; i++) {
        int r = i;
        while (p->tensors[r].alias_of >= 0) r = p->tensors[r].alias_of;
        g->root[i] = r;
        g->producer[i] = -1;
    }
    g->all_external = 1;
    for (int s = 0; s < p->n_steps; s++)
        for (int k = 0; k < p->steps[s].n_out; k++)
            if (!(p->tensors[g->root[p->steps[s].out[k]]].flags & NNOPT_PROGRAM_TENSOR_EXTERNAL))
                g->all_external = 0;
    int group = -1, previous = STEP_FALLBACK;
    for (int s = 0; s < p->n_steps; s++) {
        const nnopt_program_step *st = &p->steps[s];
        const int left = g->leave && g->leave[s];
        g->kind[s] = !left && can_specialize(g, st) ? STEP_SPECIAL : STEP_FALLBACK;
        if (g->kind[s] == STEP_SPECIAL && previous != STEP_SPECIAL) group++;
        g->group[s] = g->kind[s] == STEP_SPECIAL ? group : -1;
        previous = g->kind[s];
        g->fused_bn[s] = g->fused_act[s] = -1;
        for (int k = 0; k < st->n_in; k++) g->consumers[g->root[st->in[k]]]++;
        for (int k = 0; k < st->n_out; k++) g->producer[g->root[st->out[k]]] = s;
    }
    /* A value leaves its group when outside code, a fallback step or another
     * group reads it: then it lives in its tensor, not in tile scratch. */
    for (int i = 0; i < p->n_tensors; i++)
        if (p->tensors[i].flags & NNOPT_PROGRAM_TENSOR_EXTERNAL) g->materialize[g->root[i]] = 1;
    for (int s = 0; s < p->n_steps; s++) {
        const nnopt_program_step *st = &p->steps[s];
        for (int k = 0; k < st->n_in; k++) {
            int r = g->root[st->in[k]], from = g->producer[r];
            if (from >= 0 && (g->kind[s] == STEP_FALLBACK || g->group[from] != g->group[s]))
                g->materialize[r] = 1;
        }
    }
}

/* The step after `s` absorbs into s's chain when it is the only reader of
 * what the chain has produced so far, which nothing else needs. */
static int absorbable(const gen *g, int s, int next, nnopt_op_kind kind) {
    const nnopt_program *p = g->prog;
    if (next >= p->n_steps || g->kind[next] != STEP_SPECIAL || p->steps[next].op.kind != kind)
        return 0;
    int r = g->root[p->steps[s].out[0]];
    if (g->fused_bn[s] >= 0) r = g->root[p->steps[g->fused_bn[s]].out[0]];
    return g->root[p->steps[next].in[0]] == r && g->consumers[r] == 1 && !g->materialize[r];
}

static void fuse(gen *g) {
    const nnopt_program *p = g->prog;
    for (int s = 0; s < p->n_steps; s++) {
        g->final_out[s] = g->root[p->steps[s].out[0]];
        if (g->kind[s] != STEP_SPECIAL) continue;
        nnopt_op_kind k = p->steps[s].op.kind;
        /* (a conv with its relu inside takes nothing after it: the relu is last) */
        if (k != NNOPT_OP_CONV2D && k != NNOPT_OP_DENSE) continue;
        int next = s + 1;
        if (k == NNOPT_OP_CONV2D && absorbable(g, s, next, NNOPT_OP_BATCHNORM)) {
            g->fused_bn[s] = next;
            g->kind[next] = STEP_ABSORBED;
            g->final_out[s] = g->root[p->steps[next].out[0]];
            next++;
        }
        if (absorbable(g, s, next, NNOPT_OP_ACT)) {
            g->fused_act[s] = next;
            g->kind[next] = STEP_ABSORBED;
            g->final_out[s] = g->root[p->steps[next].out[0]];
        }
    }
}

/* Conv geometry (stride 1): the input copied into a zero-padded buffer of
 * rows WP wide, outputs computed over that buffer's flattened rows (columns
 * past Q are discarded), in NV vectors. */
typedef struct conv_geom {
    int64_t C, H, W, K, R, S, PH, PW, HP, WP, P, Q, NV, JT, xp_elems;
} conv_geom;

static conv_geom conv_geometry(const gen *g, const nnopt_program_step *s) {
    const nnopt_program_tensor *x = tensor(g, s->in[0]), *w = tensor(g, s->in[1]);
    conv_geom c;
    c.C = x->shape[1], c.H = x->shape[2], c.W = x->shape[3];
    c.K = w->shape[0], c.R = w->shape[2], c.S = w->shape[3];
    c.PH = s->op.p.conv2d.pad_h, c.PW = s->op.p.conv2d.pad_w;
    c.HP = c.H + 2 * c.PH, c.WP = c.W + 2 * c.PW;
    c.P = c.HP - c.R + 1, c.Q = c.WP - c.S + 1;
    int64_t j = (c.P - 1) * c.WP + c.Q;
    c.NV = (j + g->vl - 1) / g->vl;
    c.JT = c.NV * g->vl;
    int64_t last_read = (c.C - 1) * c.HP * c.WP + (c.R - 1) * c.WP + (c.S - 1) + c.JT;
    c.xp_elems = last_read > c.C * c.HP * c.WP ? last_read : c.C * c.HP * c.WP;
    return c;
}

typedef struct dense_geom {
    long in, out, outp, vectors;
} dense_geom;

static dense_geom dense_geometry(const gen *g, const nnopt_program_step *st) {
    const nnopt_program_tensor *w = tensor(g, st->in[1]);
    dense_geom d = {(long)w->shape[1], (long)w->shape[0], 0, 0};
    d.vectors = (d.out + g->vl - 1) / g->vl;
    d.outp = d.vectors * g->vl;
    return d;
}

/* Output channels in the vector lanes instead of output columns: when K
 * fills whole vectors and the flattened padded rows would waste more than a
 * tenth of the lanes on columns past Q (small images, e.g. LeNet-5's second
 * conv: 30%). Every lane is then an output, at one broadcast per FMA. */
static int channel_vectorized(const gen *g, const conv_geom *c) {
    double useful = (double)(c->P * c->Q) / (double)(c->NV * g->vl);
    return c->K % g->vl == 0 && c->K / g->vl <= 4 && useful < 0.9;
}

static size_t align64(size_t n) {
    return (n + 63) & ~(size_t)63;
}

/* Per-image steps of a tile run image by image, one image through all of
 * them in turn, so that each intermediate is read back while still in L1;
 * dense layers run on the whole tile, to reuse their weights across it. */
static int per_image_step(const gen *g, int s) {
    return g->prog->steps[s].op.kind != NNOPT_OP_DENSE;
}

/* Steps in one image loop interleave, so liveness is counted in phases: a
 * run of consecutive per-image steps is one phase, each dense step another. */
static int phase_of(const gen *g, int s) {
    int phase = 0;
    for (int k = 1; k <= s; k++)
        phase +=
            !(per_image_step(g, k) && per_image_step(g, k - 1) && g->group[k] == g->group[k - 1]);
    return phase;
}

/* Tile scratch: first-fit over the live intermediates of each group. */
typedef struct block {
    size_t off, size;
    int last_use, root;
} block;

static size_t place(block *live, int *n_live, size_t size, int last_use, int root) {
    size_t off = 0;
    for (int again = 1; again;) {
        again = 0;
        for (int i = 0; i < *n_live; i++)
            if (off < live[i].off + live[i].size && live[i].off < off + size) {
                off = live[i].off + live[i].size;
                again = 1;
            }
    }
    live[(*n_live)++] = (block){off, size, last_use, root};
    return off + size;
}

/* The phase of the last step that reads root. */
static int last_use(const gen *g, int root) {
    int last = -1;
    for (int s = 0; s < g->prog->n_steps; s++)
        for (int k = 0; k < g->prog->steps[s].n_in; k++)
            if (g->root[g->prog->steps[s].in[k]] == root) last = phase_of(g, s);
    return last;
}

/* Lays out one group's intermediates for `images` images per tile; returns
 * the bytes it needs. */
static size_t layout_group(gen *g, int group, int images, block *live) {
    const nnopt_program *p = g->prog;
    int n_live = 0;
    size_t peak = 0;
    for (int s = 0; s < p->n_steps; s++) {
        if (g->group[s] != group) continue;
        int phase = phase_of(g, s);
        for (int i = 0; i < n_live; i++)
            if (live[i].last_use < phase) live[i--] = live[--n_live];
        if (g->kind[s] != STEP_SPECIAL) continue;
        int r = g->final_out[s];
        if (g->materialize[r]) continue;
        size_t bytes = align64((size_t)per_image(g, r) * g->esize * (size_t)images);
        int until = last_use(g, r);
        size_t end = place(live, &n_live, bytes, until < phase ? phase : until, r);
        g->tile_off[r] = (long)(end - bytes);
        if (end > peak) peak = end;
    }
    return peak;
}

static int plan(gen *g) {
    const nnopt_program *p = g->prog;
    int groups = 0;
    for (int s = 0; s < p->n_steps; s++)
        if (g->group[s] + 1 > groups) groups = g->group[s] + 1;
    g->tile_images = calloc((size_t)groups + 1, sizeof *g->tile_images);
    block *live = calloc((size_t)p->n_tensors + 1, sizeof *live);
    if (!g->tile_images || !live) {
        free(live);
        return -1;
    }
    for (int grp = 0; grp < groups; grp++) {
        size_t one = layout_group(g, grp, 1, live);
        int images = one ? (int)(KC_TILE_BYTES / one) : KC_MAX_TILE;
        images = images < 1 ? 1 : images > KC_MAX_TILE ? KC_MAX_TILE : images;
        g->tile_images[grp] = images;
        size_t bytes = layout_group(g, grp, images, live);
        if (bytes > g->tile_bytes) g->tile_bytes = bytes;
    }
    free(live);
    for (int s = 0; s < p->n_steps; s++) {
        if (g->kind[s] == STEP_SPECIAL && p->steps[s].op.kind == NNOPT_OP_DENSE) {
            dense_geom d = dense_geometry(g, &p->steps[s]);
            g->shared_off[s] = g->shared_bytes;
            /* Packed weights and bias, then the raw ones they were packed from. */
            g->shared_bytes += align64((size_t)((d.in + 1) * d.outp) * g->esize) +
                               align64((size_t)((d.in + 1) * d.out) * g->esize);
        }
        if (g->kind[s] != STEP_SPECIAL || base_kind(p->steps[s].op.kind) != NNOPT_OP_CONV2D)
            continue;
        conv_geom c = conv_geometry(g, &p->steps[s]);
        size_t xp = align64((size_t)c.xp_elems * g->esize),
               tmp = align64((size_t)(c.K * c.JT) * g->esize);
        if (xp > g->xp_bytes) g->xp_bytes = xp;
        if (tmp > g->tmp_bytes) g->tmp_bytes = tmp;
        if (g->fused_bn[s] >= 0) {
            g->shared_off[s] = g->shared_bytes;
            g->shared_bytes += align64((size_t)(c.K * c.C * c.R * c.S + c.K) * g->esize);
        }
        if (channel_vectorized(g, &c)) { /* packed weights, then the copy they came from */
            g->pack_off[s] = g->shared_bytes;
            g->shared_bytes += 2 * align64((size_t)(c.K * c.C * c.R * c.S) * g->esize);
        }
    }
    return 0;
}

/* ---- emission ---- */

static void emit_header(gen *g) {
    sbuf *b = &g->b;
    emit(b, "/* generated by nnopt for one program: do not edit */\n#include <stdint.h>\n");
    if (g->dt == NNOPT_F32)
        emit(b,
             "typedef float real;\ntypedef float vr __attribute__((vector_size(64)));\n"
             "typedef int32_t vi __attribute__((vector_size(64)));\n#define VL 16\n"
             "#define SQRT sqrtf\n#define ERF erff\n#define EXP_HI 88.0f\n#define EXP_LO -87.0f\n"
             "#define EXP_SHIFT 12582912.0f\n#define EXP_BIAS 127\n#define EXP_MANT 23\n"
             "#define EXP_C0 (1.0f / 5040)\n"
             "#define EXP_POLY p = p * r + 1.0f / 720; p = p * r + 1.0f / 120; "
             "p = p * r + 1.0f / 24; p = p * r + 1.0f / 6; p = p * r + 0.5f; p = p * r + 1; "
             "p = p * r + 1;\n");
    else
        emit(b, "typedef double real;\ntypedef double vr __attribute__((vector_size(64)));\n"
                "typedef int64_t vi __attribute__((vector_size(64)));\n#define VL 8\n"
                "#define SQRT sqrt\n#define ERF erf\n#define EXP_HI 709.0\n#define EXP_LO -708.0\n"
                "#define EXP_SHIFT 6755399441055744.0\n#define EXP_BIAS 1023\n#define EXP_MANT 52\n"
                "#define EXP_C0 (1.0 / 6227020800.0)\n"
                "#define EXP_POLY p = p * r + 1.0 / 479001600; p = p * r + 1.0 / 39916800; "
                "p = p * r + 1.0 / 3628800; p = p * r + 1.0 / 362880; p = p * r + 1.0 / 40320; "
                "p = p * r + 1.0 / 5040; p = p * r + 1.0 / 720; p = p * r + 1.0 / 120; "
                "p = p * r + 1.0 / 24; p = p * r + 1.0 / 6; p = p * r + 0.5; p = p * r + 1; "
                "p = p * r + 1;\n");
    emit(b, "%s", nnopt_kc_prelude);
}

static void emit_conv_microkernel(gen *g, int s, const conv_geom *c, int kb, int jb, int bias,
                                  int act) {
    sbuf *b = &g->b;
    long crs = (long)(c->C * c->R * c->S);
    emit(b,
         "static inline void conv%d_mk%dx%d(const real *restrict xp, const real *restrict w, "
         "const real *restrict b, real *restrict out) {\n",
         s, kb, jb);
    for (int k = 0; k < kb; k++)
        for (int j = 0; j < jb; j++)
            emit(b, "  vr a%d_%d = %s;\n", k, j, bias ? "bc(b[0])" : "(vr){0}");
    if (bias)
        for (int k = 1; k < kb; k++)
            for (int j = 0; j < jb; j++) emit(b, "  a%d_%d = bc(b[%d]);\n", k, j, k);
    emit(b,
         "  for (int c = 0; c < %ld; c++)\n  for (int r = 0; r < %ld; r++) {\n"
         "    const real *xr = xp + (c * %ld + r) * %ld;\n"
         "    const real *wr = w + (c * %ld + r) * %ld;\n"
         "#pragma GCC unroll 16\n    for (int s = 0; s < %ld; s++) {\n",
         (long)c->C, (long)c->R, (long)c->HP, (long)c->WP, (long)c->R, (long)c->S, (long)c->S);
    for (int j = 0; j < jb; j++) emit(b, "      vr x%d = ld(xr + s + %d);\n", j, j * g->vl);
    for (int k = 0; k < kb; k++) {
        emit(b, "      { vr wv = bc(wr[%ld + s]);", (long)k * crs);
        for (int j = 0; j < jb; j++) emit(b, " a%d_%d += wv * x%d;", k, j, j);
        emit(b, " }\n");
    }
    emit(b, "    }\n  }\n");
    for (int k = 0; k < kb; k++)
        for (int j = 0; j < jb; j++)
            emit(b, "  st(out + %ld, %s(a%d_%d));\n", (long)k * c->JT + j * g->vl, act_fn(act), k,
                 j);
    emit(b, "}\n");
}

/* Cycles per tap of a kb x jb micro-kernel: two FMAs and two vector loads
 * (jb inputs, kb broadcast weights) issue per cycle, and each accumulator's
 * FMAs form a chain of 4-cycle latency, whichever bound is the slowest; the
 * loads are added at 1/16 as a tie-break towards larger blocks. */
static double block_cost(int kb, int jb) {
    double fma = kb * jb / 2.0, loads = (kb + jb) / 2.0, latency = 4;
    double bound = fma > loads ? fma : loads;
    return (bound > latency ? bound : latency) + loads / 16;
}

/* The register block (channels x vectors) with the fewest cycles over the
 * whole output, remainder blocks included. */
static void conv_blocking(const conv_geom *c, int *kb_out, int *jb_out) {
    double best = -1;
    for (int jb = 1; jb <= KC_CONV_MAX_VECTORS && jb <= c->NV; jb++)
        for (int kb = 1; kb <= c->K && kb * jb <= KC_CONV_ACCUMULATORS; kb++) {
            long kq = (long)(c->K / kb), kr = (long)(c->K % kb);
            long jq = (long)(c->NV / jb), jr = (long)(c->NV % jb);
            double cost = kq * jq * block_cost(kb, jb) + (kr ? jq * block_cost((int)kr, jb) : 0) +
                          (jr ? kq * block_cost(kb, (int)jr) : 0) +
                          (kr && jr ? block_cost((int)kr, (int)jr) : 0);
            if (best < 0 || cost < best) {
                best = cost;
                *kb_out = kb;
                *jb_out = jb;
            }
        }
}

/* The padded input copy shared by both convolution layouts. */
static void emit_conv_pad(gen *g, const conv_geom *c) {
    emit(&g->b,
         "  for (int c = 0; c < %ld; c++)\n  for (int h = 0; h < %ld; h++) {\n"
         "    real *row = xp + (c * %ld + h) * %ld;\n    int ih = h - %ld;\n"
         "    if (ih < 0 || ih >= %ld) { for (int i = 0; i < %ld; i++) row[i] = 0; continue; }\n"
         "    for (int i = 0; i < %ld; i++) row[i] = 0;\n"
         "    __builtin_memcpy(row + %ld, x + (c * %ld + ih) * %ld, %ld * sizeof(real));\n"
         "    for (int i = %ld; i < %ld; i++) row[i] = 0;\n  }\n",
         (long)c->C, (long)c->HP, (long)c->HP, (long)c->WP, (long)c->PH, (long)c->H, (long)c->WP,
         (long)c->PW, (long)c->PW, (long)c->H, (long)c->W, (long)c->W, (long)(c->PW + c->W),
         (long)c->WP);
}

/* Channel-vectorised convolution: a micro-kernel per block of output
 * positions (their input offsets are constants), kv vectors of channels
 * each; results go to tmp as [position][K], then transposed into y. */
static void emit_conv_channels(gen *g, int s, const conv_geom *c, int bias, int act) {
    sbuf *b = &g->b;
    int kv = (int)(c->K / g->vl), block = KC_CONV_ACCUMULATORS / kv;
    long positions = (long)(c->P * c->Q), K = (long)c->K;
    int blocks = (int)((positions + block - 1) / block);
    for (int blk = 0; blk < blocks; blk++) {
        long first = (long)blk * block,
             count = positions - first < block ? positions - first : block;
        emit(b,
             "static inline void conv%d_cb%d(const real *restrict xp, const real *restrict wp, "
             "const real *restrict b, real *restrict out) {\n",
             s, blk);
        for (long i = 0; i < count; i++)
            for (int v = 0; v < kv; v++) {
                if (bias)
                    emit(b, "  vr a%ld_%d = ld(b + %d);\n", i, v, v * g->vl);
                else
                    emit(b, "  vr a%ld_%d = (vr){0};\n", i, v);
            }
        emit(b,
             "  for (int c = 0; c < %ld; c++)\n  for (int r = 0; r < %ld; r++) {\n"
             "    const real *xr = xp + (c * %ld + r) * %ld;\n"
             "    const real *wr = wp + (c * %ld + r) * %ld;\n"
             "#pragma GCC unroll 16\n    for (int s = 0; s < %ld; s++) {\n",
             (long)c->C, (long)c->R, (long)c->HP, (long)c->WP, (long)c->R, (long)c->S * K,
             (long)c->S);
        for (int v = 0; v < kv; v++)
            emit(b, "      vr w%d = ld(wr + s * %ld + %d);\n", v, K, v * g->vl);
        for (long i = 0; i < count; i++) {
            long pos = first + i, off = (pos / (long)c->Q) * (long)c->WP + pos % (long)c->Q;
            emit(b, "      { vr xv = bc(xr[s + %ld]);", off);
            for (int v = 0; v < kv; v++) emit(b, " a%ld_%d += xv * w%d;", i, v, v);
            emit(b, " }\n");
        }
        emit(b, "    }\n  }\n");
        for (long i = 0; i < count; i++)
            for (int v = 0; v < kv; v++)
                emit(b, "  st(out + %ld, %s(a%ld_%d));\n", (first + i) * K + v * g->vl, act_fn(act),
                     i, v);
        emit(b, "}\n");
    }
    emit(b,
         "/* step %d: conv %ldx%ldx%ld -> %ld, %ldx%ld, pad %ld,%ld%s%s; channels in lanes */\n"
         "static void conv%d(const real *restrict x, const real *restrict wp, const real "
         "*restrict b, real *restrict y, real *restrict xp, real *restrict tmp) {\n",
         s, (long)c->C, (long)c->H, (long)c->W, K, (long)c->R, (long)c->S, (long)c->PH, (long)c->PW,
         g->fused_bn[s] >= 0 ? ", batch norm folded" : "",
         g->fused_act[s] >= 0 ? ", activation fused" : "", s);
    emit_conv_pad(g, c);
    for (int blk = 0; blk < blocks; blk++) emit(b, "  conv%d_cb%d(xp, wp, b, tmp);\n", s, blk);
    emit(b,
         "  for (long k = 0; k < %ld; k++)\n"
         "    for (long i = 0; i < %ld; i++) y[k * %ld + i] = tmp[i * %ld + k];\n}\n",
         K, positions, positions, K);
}

/* Weights as [C][R][S][K] for the channel-vectorised kernels, repacked when
 * they differ from the copy they were last packed from (folded weights are
 * recomputed every call, so those always are). */
static void emit_conv_pack(gen *g, int s) {
    const nnopt_program_step *st = &g->prog->steps[s];
    conv_geom c = conv_geometry(g, st);
    long crs = (long)(c.C * c.R * c.S), n = crs * (long)c.K;
    char source[96];
    if (g->fused_bn[s] >= 0)
        snprintf(source, sizeof source, "(const real *)(shared + %zu)", g->shared_off[s]);
    else
        snprintf(source, sizeof source, "(const real *)data[%d]", st->in[1]);
    emit(&g->b,
         "  {\n    const real *w = %s;\n"
         "    real *wp = (real *)(shared + %zu), *seen = wp + %ld;\n"
         "    if (__builtin_memcmp(seen, w, %ld * sizeof(real)) != 0) {\n"
         "      __builtin_memcpy(seen, w, %ld * sizeof(real));\n"
         "      for (long k = 0; k < %ld; k++)\n"
         "        for (long i = 0; i < %ld; i++) wp[i * %ld + k] = w[k * %ld + i];\n"
         "    }\n  }\n",
         source, g->pack_off[s], (long)(align64((size_t)n * g->esize) / g->esize), n, n, (long)c.K,
         crs, (long)c.K, crs);
}

static void emit_conv(gen *g, int s) {
    sbuf *b = &g->b;
    const nnopt_program_step *st = &g->prog->steps[s];
    conv_geom c = conv_geometry(g, st);
    int bias = st->n_in == 3 || g->fused_bn[s] >= 0;
    int act = g->fused_act[s] >= 0      ? g->prog->steps[g->fused_act[s]].op.p.act.kind
              : relu_in_op(st->op.kind) ? NNOPT_ACT_RELU
                                        : 0;
    if (channel_vectorized(g, &c)) {
        emit_conv_channels(g, s, &c, bias, act);
        return;
    }
    int kb = 1, jb = 1;
    conv_blocking(&c, &kb, &jb);
    int kr = (int)(c.K % kb), jr = (int)(c.NV % jb);
    emit_conv_microkernel(g, s, &c, kb, jb, bias, act);
    if (jr) emit_conv_microkernel(g, s, &c, kb, jr, bias, act);
    if (kr) emit_conv_microkernel(g, s, &c, kr, jb, bias, act);
    if (kr && jr) emit_conv_microkernel(g, s, &c, kr, jr, bias, act);
    emit(b,
         "/* step %d: conv %ldx%ldx%ld -> %ld, %ldx%ld, pad %ld,%ld%s%s */\n"
         "static void conv%d(const real *restrict x, const real *restrict w, const real *restrict "
         "b, real *restrict y, real *restrict xp, real *restrict tmp) {\n"
         "  for (int c = 0; c < %ld; c++)\n  for (int h = 0; h < %ld; h++) {\n"
         "    real *row = xp + (c * %ld + h) * %ld;\n    int ih = h - %ld;\n"
         "    if (ih < 0 || ih >= %ld) { for (int i = 0; i < %ld; i++) row[i] = 0; continue; }\n"
         "    for (int i = 0; i < %ld; i++) row[i] = 0;\n"
         "    __builtin_memcpy(row + %ld, x + (c * %ld + ih) * %ld, %ld * sizeof(real));\n"
         "    for (int i = %ld; i < %ld; i++) row[i] = 0;\n  }\n",
         s, (long)c.C, (long)c.H, (long)c.W, (long)c.K, (long)c.R, (long)c.S, (long)c.PH,
         (long)c.PW, g->fused_bn[s] >= 0 ? ", batch norm folded" : "",
         g->fused_act[s] >= 0 ? ", activation fused" : "", s, (long)c.C, (long)c.HP, (long)c.HP,
         (long)c.WP, (long)c.PH, (long)c.H, (long)c.WP, (long)c.PW, (long)c.PW, (long)c.H,
         (long)c.W, (long)c.W, (long)(c.PW + c.W), (long)c.WP);
    long crs = (long)(c.C * c.R * c.S), step_j = (long)jb * g->vl;
    long k_main = (long)(c.K - kr), j_main = (long)((c.NV - jr) * g->vl);
    emit(b, "  for (int k = 0; k < %ld; k += %d) {\n", k_main, kb);
    emit(b,
         "    for (int j = 0; j < %ld; j += %ld) conv%d_mk%dx%d(xp + j, w + k * %ld, %s, tmp + k "
         "* %ld + j);\n",
         j_main, step_j, s, kb, jb, crs, bias ? "b + k" : "0", (long)c.JT);
    if (jr)
        emit(b, "    conv%d_mk%dx%d(xp + %ld, w + k * %ld, %s, tmp + k * %ld + %ld);\n", s, kb, jr,
             j_main, crs, bias ? "b + k" : "0", (long)c.JT, j_main);
    emit(b, "  }\n");
    if (kr) {
        char bias_tail[48];
        snprintf(bias_tail, sizeof bias_tail, bias ? "b + %ld" : "0", k_main);
        emit(b,
             "  for (int j = 0; j < %ld; j += %ld) conv%d_mk%dx%d(xp + j, w + %ld, %s, tmp + %ld "
             "+ j);\n",
             j_main, step_j, s, kr, jb, k_main * crs, bias_tail, k_main * (long)c.JT);
        if (jr)
            emit(b, "  conv%d_mk%dx%d(xp + %ld, w + %ld, %s, tmp + %ld);\n", s, kr, jr, j_main,
                 k_main * crs, bias_tail, k_main * (long)c.JT + j_main);
    }
    emit(b,
         "  for (int k = 0; k < %ld; k++)\n  for (int p = 0; p < %ld; p++)\n"
         "    __builtin_memcpy(y + (k * %ld + p) * %ld, tmp + k * %ld + p * %ld, %ld * "
         "sizeof(real));\n}\n",
         (long)c.K, (long)c.P, (long)c.P, (long)c.Q, (long)c.JT, (long)c.WP, (long)c.Q);
}

/* Dense layers run on packed weights: W transposed to [IN][OUTP] (OUT
 * rounded up to whole vectors, zero-padded) with the bias padded alike,
 * repacked at the start of every call (they change every training step).
 * A micro-kernel keeps nb images x ov output vectors in registers; per input
 * it loads ov weight vectors and broadcasts nb inputs. `tail` is how many
 * outputs of its last vector exist (VL when it is whole). */
static void emit_dense_microkernel(gen *g, int s, const dense_geom *d, int nb, int ov, int tail,
                                   int act) {
    sbuf *b = &g->b;
    emit(b,
         "static inline void dense%d_mk%dx%d_%d(const real *restrict x, long xs, const real "
         "*restrict wt, const real *restrict bp, real *restrict y, long ys) {\n",
         s, nb, ov, tail);
    for (int n = 0; n < nb; n++)
        for (int v = 0; v < ov; v++) emit(b, "  vr a%d_%d = ld(bp + %d);\n", n, v, v * g->vl);
    emit(b, "  for (long i = 0; i < %ld; i++) {\n", d->in);
    for (int v = 0; v < ov; v++)
        emit(b, "    vr w%d = ld(wt + i * %ld + %d);\n", v, d->outp, v * g->vl);
    for (int n = 0; n < nb; n++) {
        emit(b, "    { vr xv = bc(x[%d * xs + i]);", n);
        for (int v = 0; v < ov; v++) emit(b, " a%d_%d += xv * w%d;", n, v, v);
        emit(b, " }\n");
    }
    emit(b, "  }\n");
    for (int n = 0; n < nb; n++)
        for (int v = 0; v < ov; v++) {
            if (v < ov - 1 || tail == g->vl)
                emit(b, "  st(y + %d * ys + %d, %s(a%d_%d));\n", n, v * g->vl, act_fn(act), n, v);
            else
                emit(b,
                     "  { vr r = %s(a%d_%d); __builtin_memcpy(y + %d * ys + %d, &r, %d * "
                     "sizeof(real)); }\n",
                     act_fn(act), n, v, n, v * g->vl, tail);
        }
    emit(b, "}\n");
}

static void emit_dense(gen *g, int s) {
    sbuf *b = &g->b;
    const nnopt_program_step *st = &g->prog->steps[s];
    dense_geom d = dense_geometry(g, st);
    int act = g->fused_act[s] >= 0 ? g->prog->steps[g->fused_act[s]].op.p.act.kind : 0;
    int sizes[2] = {KC_DENSE_IMAGES, 1};
    int ov = (int)(d.vectors < KC_DENSE_VECTORS ? d.vectors : KC_DENSE_VECTORS);
    int last_tail = (int)(d.out - (d.vectors - 1) * g->vl);
    /* Output blocks: whole blocks of ov vectors, then the rest; only the
     * last vector of all may be partial. */
    for (int v = 0; v < 2; v++)
        for (long o = 0; o < d.vectors; o += ov) {
            int count = (int)(d.vectors - o < ov ? d.vectors - o : ov);
            int tail = o + count == d.vectors ? last_tail : g->vl;
            /* Emitted once per distinct (images, vectors, tail). */
            int seen = 0;
            for (long p = 0; p < o; p += ov) {
                int pc = (int)(d.vectors - p < ov ? d.vectors - p : ov);
                seen |= pc == count && (p + pc == d.vectors ? last_tail : g->vl) == tail;
            }
            if (!seen) emit_dense_microkernel(g, s, &d, sizes[v], count, tail, act);
        }
    emit(b,
         "/* step %d: dense %ld -> %ld%s */\n"
         "static void dense%d(const real *restrict x, long xs, const real *restrict wt, const "
         "real *restrict bp, real *restrict y, long ys, long cnt) {\n  long n = 0;\n",
         s, d.in, d.out, act ? ", activation fused" : "", s);
    for (int v = 0; v < 2; v++) {
        emit(b, "  for (; n + %d <= cnt; n += %d) {\n", sizes[v], sizes[v]);
        for (long o = 0; o < d.vectors; o += ov) {
            int count = (int)(d.vectors - o < ov ? d.vectors - o : ov);
            int tail = o + count == d.vectors ? last_tail : g->vl;
            emit(b,
                 "    dense%d_mk%dx%d_%d(x + n * xs, xs, wt + %ld, bp + %ld, y + n * ys + %ld, "
                 "ys);\n",
                 s, sizes[v], count, tail, o * g->vl, o * g->vl, o * g->vl);
        }
        emit(b, "  }\n");
    }
    emit(b, "}\n");
}

static void emit_pool(gen *g, int s) {
    sbuf *b = &g->b;
    const nnopt_program_step *st = &g->prog->steps[s];
    const nnopt_program_tensor *x = tensor(g, st->in[0]), *y = tensor(g, st->out[0]);
    const nnopt_pool2d_params *pp = &st->op.p.pool2d;
    int max = pp->kind == NNOPT_POOL_MAX, padded = pp->pad_h || pp->pad_w;
    long C = (long)x->shape[1], H = (long)x->shape[2], W = (long)x->shape[3];
    long P = (long)y->shape[2], Q = (long)y->shape[3];
    emit(b,
         "/* step %d: %s pool %dx%d stride %d,%d pad %d,%d */\n"
         "static void pool%d(const real *restrict x, real *restrict y) {\n"
         "  for (int c = 0; c < %ld; c++)\n  for (int p = 0; p < %ld; p++)\n"
         "  for (int q = 0; q < %ld; q++) {\n    real acc = %s;\n"
         "    for (int r = 0; r < %d; r++)\n    for (int s = 0; s < %d; s++) {\n"
         "      int ih = p * %d - %d + r, iw = q * %d - %d + s;\n",
         s, max ? "max" : "avg", pp->kernel_h, pp->kernel_w, pp->stride_h, pp->stride_w, pp->pad_h,
         pp->pad_w, s, C, P, Q, max ? "-INFINITY" : "0", pp->kernel_h, pp->kernel_w, pp->stride_h,
         pp->pad_h, pp->stride_w, pp->pad_w);
    if (padded) emit(b, "      if (ih < 0 || ih >= %ld || iw < 0 || iw >= %ld) continue;\n", H, W);
    emit(b, "      real v = x[(c * %ld + ih) * %ld + iw];\n", H, W);
    emit(b, max ? "      acc = v > acc ? v : acc;\n" : "      acc += v;\n");
    /* Average pooling divides by the whole window (count_include_pad). */
    if (max)
        emit(b, "    }\n    y[(c * %ld + p) * %ld + q] = acc;\n  }\n}\n", P, Q);
    else
        emit(b, "    }\n    y[(c * %ld + p) * %ld + q] = acc / (real)%d;\n  }\n}\n", P, Q,
             pp->kernel_h * pp->kernel_w);
}

static void emit_elementwise(gen *g, int s) {
    sbuf *b = &g->b;
    const nnopt_program_step *st = &g->prog->steps[s];
    long n = (long)per_image(g, st->out[0]), main_end = n / g->vl * g->vl;
    if (st->op.kind == NNOPT_OP_ACT) {
        const char *fn = act_fn(st->op.p.act.kind);
        emit(b,
             "/* step %d: %s */\nstatic void act%d(const real *x, real *y) {\n"
             "  for (long i = 0; i < %ld; i += VL) st(y + i, %s(ld(x + i)));\n"
             "  for (long i = %ld; i < %ld; i++) y[i] = %s(bc(x[i]))[0];\n}\n",
             s, fn, s, main_end, fn, main_end, n, fn);
    } else if (st->op.kind == NNOPT_OP_ADD) {
        emit(b,
             "/* step %d: add */\nstatic void add%d(const real *a, const real *c, real *y) {\n"
             "  for (long i = 0; i < %ld; i += VL) st(y + i, ld(a + i) + ld(c + i));\n"
             "  for (long i = %ld; i < %ld; i++) y[i] = a[i] + c[i];\n}\n",
             s, s, main_end, main_end, n);
    } else if (st->op.kind == NNOPT_OP_ADD_RELU) {
        emit(b,
             "/* step %d: add_relu */\nstatic void add%d(const real *a, const real *c, real *y) "
             "{\n"
             "  for (long i = 0; i < %ld; i += VL) st(y + i, act_relu(ld(a + i) + ld(c + i)));\n"
             "  for (long i = %ld; i < %ld; i++) y[i] = act_relu(bc(a[i] + c[i]))[0];\n}\n",
             s, s, main_end, main_end, n);
    } else { /* batch norm with running statistics */
        const nnopt_program_tensor *x = tensor(g, st->in[0]);
        long C = (long)x->shape[1], inner = n / C;
        emit(b,
             "/* step %d: batch norm (running statistics) */\n"
             "static void bn%d(const real *x, const real *g, const real *be, const real *m, const "
             "real *v, real *y) {\n"
             "  for (int c = 0; c < %ld; c++) {\n"
             "    real sc = g[c] / SQRT(v[c] + (real)%.17g), sh = be[c] - m[c] * sc;\n"
             "    for (long i = 0; i < %ld; i++) y[c * %ld + i] = x[c * %ld + i] * sc + sh;\n"
             "  }\n}\n",
             s, s, C, st->op.p.bn.eps, inner, inner, inner);
    }
}

/* The tensor pointer variable of root r inside a tile: its own tensor, or
 * tile scratch. */
static void emit_tile_pointer(gen *g, int r) {
    long pi = (long)per_image(g, r);
    if (g->tile_off[r] >= 0 && !g->materialize[r])
        emit(&g->b, "      real *t%d = (real *)(S + %ld);\n", r, g->tile_off[r]);
    else
        emit(&g->b, "      real *t%d = (real *)data[%d] + n0 * %ld;\n", r, r, pi);
}

/* The call of step s on image i (or, for dense, on the tile). */
static void emit_step_call(gen *g, int s) {
    sbuf *b = &g->b;
    const nnopt_program_step *st = &g->prog->steps[s];
    int x = g->root[st->in[0]], y = g->final_out[s];
    long px = (long)per_image(g, x), py = (long)per_image(g, y);
    char bias_arg[64] = "0";
    if (st->n_in == 3) snprintf(bias_arg, sizeof bias_arg, "(const real *)data[%d]", st->in[2]);
    switch (base_kind(st->op.kind)) {
    case NNOPT_OP_CONV2D: {
        conv_geom cg = conv_geometry(g, st);
        if (channel_vectorized(g, &cg)) {
            char cbias[96] = "0";
            if (g->fused_bn[s] >= 0)
                snprintf(cbias, sizeof cbias, "(const real *)(shared + %zu) + %ld",
                         g->shared_off[s], (long)(cg.K * cg.C * cg.R * cg.S));
            else if (st->n_in == 3)
                snprintf(cbias, sizeof cbias, "(const real *)data[%d]", st->in[2]);
            emit(b,
                 "        conv%d(t%d + i * %ld, (const real *)(shared + %zu), %s, t%d + i * %ld, "
                 "xp, tmp);\n",
                 s, x, px, g->pack_off[s], cbias, y, py);
            break;
        }
        if (g->fused_bn[s] >= 0) {
            conv_geom c = conv_geometry(g, st);
            long wsz = (long)(c.K * c.C * c.R * c.S);
            emit(b,
                 "        conv%d(t%d + i * %ld, (const real *)(shared + %zu), (const real "
                 "*)(shared + %zu) + %ld, t%d + i * %ld, xp, tmp);\n",
                 s, x, px, g->shared_off[s], g->shared_off[s], wsz, y, py);
        } else {
            emit(b,
                 "        conv%d(t%d + i * %ld, (const real *)data[%d], %s, t%d + i * %ld, xp, "
                 "tmp);\n",
                 s, x, px, st->in[1], bias_arg, y, py);
        }
        break;
    }
    case NNOPT_OP_DENSE: {
        dense_geom d = dense_geometry(g, st);
        emit(b,
             "      dense%d(t%d, %ld, (const real *)(shared + %zu), (const real *)(shared + %zu) + "
             "%ld, t%d, %ld, cnt);\n",
             s, x, px, g->shared_off[s], g->shared_off[s], d.in * d.outp, y, py);
        break;
    }
    case NNOPT_OP_POOL2D:
        emit(b, "        pool%d(t%d + i * %ld, t%d + i * %ld);\n", s, x, px, y, py);
        break;
    case NNOPT_OP_ACT:
        emit(b, "        act%d(t%d + i * %ld, t%d + i * %ld);\n", s, x, px, y, py);
        break;
    case NNOPT_OP_ADD:
        emit(b, "        add%d(t%d + i * %ld, t%d + i * %ld, t%d + i * %ld);\n", s, x, px,
             g->root[st->in[1]], px, y, py);
        break;
    case NNOPT_OP_BATCHNORM:
        emit(b,
             "        bn%d(t%d + i * %ld, (const real *)data[%d], (const real *)data[%d], (const "
             "real *)data[%d], (const real *)data[%d], t%d + i * %ld);\n",
             s, x, px, st->in[1], st->in[2], st->in[3], st->in[4], y, py);
        break;
    default:
        break;
    }
}

/* Batch norm folded into the preceding convolution, recomputed every call
 * (the statistics and weights may have changed since the last one). */
static void emit_fold(gen *g, int s) {
    const nnopt_program_step *st = &g->prog->steps[s], *bn = &g->prog->steps[g->fused_bn[s]];
    conv_geom c = conv_geometry(g, st);
    long crs = (long)(c.C * c.R * c.S), wsz = (long)c.K * crs;
    char conv_bias[64] = "0";
    if (st->n_in == 3)
        snprintf(conv_bias, sizeof conv_bias, "((const real *)data[%d])[k]", st->in[2]);
    emit(&g->b,
         "  {\n    const real *w = data[%d], *gm = data[%d], *be = data[%d], *m = data[%d], *v = "
         "data[%d];\n    real *wf = (real *)(shared + %zu), *bf = wf + %ld;\n"
         "    for (int k = 0; k < %ld; k++) {\n"
         "      real sc = gm[k] / SQRT(v[k] + (real)%.17g);\n"
         "      for (long i = 0; i < %ld; i++) wf[k * %ld + i] = w[k * %ld + i] * sc;\n"
         "      bf[k] = (%s - m[k]) * sc + be[k];\n    }\n  }\n",
         st->in[1], bn->in[1], bn->in[2], bn->in[3], bn->in[4], g->shared_off[s], wsz, (long)c.K,
         bn->op.p.bn.eps, crs, crs, crs, conv_bias);
}

/* Dense weights transposed to [IN][OUTP] and the bias padded. They change
 * between calls in training and between evaluations, so each call compares
 * them with the copy they were last packed from (a sequential read, far
 * cheaper than the transposition) and repacks only when they differ. The
 * shared area starts zeroed, which is also the packing of all-zero weights. */
static void emit_dense_pack(gen *g, int s) {
    const nnopt_program_step *st = &g->prog->steps[s];
    dense_geom d = dense_geometry(g, st);
    size_t packed = align64((size_t)((d.in + 1) * d.outp) * g->esize);
    char bias[48] = "0";
    if (st->n_in == 3) snprintf(bias, sizeof bias, "(const real *)data[%d]", st->in[2]);
    emit(&g->b,
         "  {\n    const real *w = (const real *)data[%d], *bias = %s;\n"
         "    real *wt = (real *)(shared + %zu), *seen = (real *)(shared + %zu);\n"
         "    int changed = __builtin_memcmp(seen, w, %ld * sizeof(real)) != 0;\n"
         "    if (bias) changed |= __builtin_memcmp(seen + %ld, bias, %ld * sizeof(real)) != 0;\n"
         "    if (changed) {\n"
         "      __builtin_memcpy(seen, w, %ld * sizeof(real));\n"
         "      if (bias) __builtin_memcpy(seen + %ld, bias, %ld * sizeof(real));\n",
         st->in[1], bias, g->shared_off[s], g->shared_off[s] + packed, d.in * d.out, d.in * d.out,
         d.out, d.in * d.out, d.in * d.out, d.out);
    /* Blocks of 16 inputs: rows of W are read whole lines and the 16 rows of
     * WT being written stay in L1. */
    if (g->threads > 1)
        emit(&g->b, "#pragma omp parallel for num_threads(%d) schedule(static)\n", g->threads);
    emit(&g->b,
         "      for (long i0 = 0; i0 < %ld; i0 += 16) {\n"
         "        long i1 = i0 + 16 < %ld ? i0 + 16 : %ld;\n"
         "        for (long o = 0; o < %ld; o++)\n"
         "          for (long i = i0; i < i1; i++) wt[i * %ld + o] = w[o * %ld + i];\n"
         "      }\n"
         "      real *bp = wt + %ld;\n"
         "      for (long o = 0; o < %ld; o++) bp[o] = bias ? bias[o] : 0;\n"
         "    }\n  }\n",
         d.in, d.in, d.in, d.out, d.outp, d.in, d.in * d.outp, d.out);
}

static void emit_group(gen *g, int grp, int first, int last) {
    sbuf *b = &g->b;
    const nnopt_program *p = g->prog;
    long batch = (long)tensor(g, p->steps[first].in[0])->shape[0];
    int images = g->tile_images[grp];
    emit(b, "  /* steps %d-%d: %d image%s per tile */\n", first, last, images,
         images == 1 ? "" : "s");
    if (g->threads > 1)
        emit(b, "#pragma omp parallel for num_threads(%d) schedule(static)\n", g->threads);
    emit(b,
         "  for (long tile = 0; tile < %ld; tile++) {\n"
         "      char *S = scratch + (size_t)KC_TID * %zu;\n"
         "      real *xp = (real *)(S + %zu), *tmp = (real *)(S + %zu);\n"
         "      (void)xp; (void)tmp;\n"
         "      const long n0 = tile * %d, cnt = %ld - n0 < %d ? %ld - n0 : %d;\n",
         (batch + images - 1) / images, g->tile_bytes + g->xp_bytes + g->tmp_bytes, g->tile_bytes,
         g->tile_bytes + g->xp_bytes, images, batch, images, batch, images);
    /* Pointers for every batched value the group touches. */
    char *declared = calloc((size_t)p->n_tensors, 1);
    if (!declared) {
        b->oom = 1;
        return;
    }
    for (int s = first; s <= last; s++) {
        if (g->kind[s] != STEP_SPECIAL) continue;
        const nnopt_program_step *st = &p->steps[s];
        int vals[3] = {g->root[st->in[0]],
                       base_kind(st->op.kind) == NNOPT_OP_ADD ? g->root[st->in[1]] : -1,
                       g->final_out[s]};
        for (int v = 0; v < 3; v++)
            if (vals[v] >= 0 && !declared[vals[v]]) {
                declared[vals[v]] = 1;
                emit_tile_pointer(g, vals[v]);
            }
    }
    free(declared);
    int in_image_loop = 0;
    for (int s = first; s <= last; s++) {
        if (g->kind[s] != STEP_SPECIAL) continue;
        if (per_image_step(g, s) != in_image_loop) {
            emit(b, in_image_loop ? "      }\n" : "      for (long i = 0; i < cnt; i++) {\n");
            in_image_loop = !in_image_loop;
        }
        emit_step_call(g, s);
    }
    if (in_image_loop) emit(b, "      }\n");
    emit(b, "  }\n");
}

static void emit_program(gen *g) {
    sbuf *b = &g->b;
    const nnopt_program *p = g->prog;
    for (int s = 0; s < p->n_steps; s++) {
        if (g->kind[s] != STEP_SPECIAL) continue;
        switch (base_kind(p->steps[s].op.kind)) {
        case NNOPT_OP_CONV2D:
            emit_conv(g, s);
            break;
        case NNOPT_OP_DENSE:
            emit_dense(g, s);
            break;
        case NNOPT_OP_POOL2D:
            emit_pool(g, s);
            break;
        default:
            emit_elementwise(g, s);
            break;
        }
    }
    emit(b,
         "const size_t nnopt_kc_scratch_bytes = %zu, nnopt_kc_shared_bytes = %zu;\n"
         "const int nnopt_kc_threads = %d;\n"
         "int nnopt_kc_program(void *const *data, kc_fallback_fn fallback, void *ctx, char "
         "*shared, char *scratch) {\n  (void)shared; (void)scratch;\n",
         g->tile_bytes + g->xp_bytes + g->tmp_bytes, g->shared_bytes, g->threads);
    for (int s = 0; s < p->n_steps; s++) {
        if (g->kind[s] == STEP_SPECIAL && g->fused_bn[s] >= 0) emit_fold(g, s);
        if (g->kind[s] == STEP_SPECIAL && base_kind(p->steps[s].op.kind) == NNOPT_OP_CONV2D) {
            conv_geom c = conv_geometry(g, &p->steps[s]);
            if (channel_vectorized(g, &c)) emit_conv_pack(g, s);
        }
        if (g->kind[s] == STEP_SPECIAL && p->steps[s].op.kind == NNOPT_OP_DENSE)
            emit_dense_pack(g, s);
    }
    for (int s = 0; s < p->n_steps;) {
        if (g->kind[s] == STEP_FALLBACK) {
            emit(b, "  if (fallback(ctx, %d)) return 1; /* %s */\n", s,
                 nnopt_op_kind_name(p->steps[s].op.kind));
            s++;
            continue;
        }
        int last = s;
        while (last + 1 < p->n_steps && g->group[last + 1] == g->group[s]) last++;
        emit_group(g, g->group[s], s, last);
        s = last + 1;
    }
    emit(b, "  return 0;\n}\n");
}

void nnopt_kc_source_free(kc_source *s) {
    free(s->text);
    memset(s, 0, sizeof *s);
}

int nnopt_kc_generate(const nnopt_program *prog, int threads, const unsigned char *leave,
                      kc_source *out) {
    memset(out, 0, sizeof *out);
    gen g;
    memset(&g, 0, sizeof g);
    g.prog = prog;
    g.leave = leave;
    g.threads = threads > 0 ? threads : 1;
    g.dt = NNOPT_F32;
    for (int s = 0; s < prog->n_steps; s++)
        if (prog->steps[s].n_in > 0 && (prog->tensors[prog->steps[s].in[0]].dtype == NNOPT_F64)) {
            g.dt = NNOPT_F64;
            break;
        }
    g.esize = nnopt_dtype_size(g.dt);
    g.vl = (int)(64 / g.esize);
    size_t nt = (size_t)prog->n_tensors + 1, ns = (size_t)prog->n_steps + 1;
    g.root = calloc(nt, sizeof *g.root);
    g.consumers = calloc(nt, sizeof *g.consumers);
    g.materialize = calloc(nt, sizeof *g.materialize);
    g.producer = calloc(nt, sizeof *g.producer);
    g.tile_off = calloc(nt, sizeof *g.tile_off);
    g.kind = calloc(ns, sizeof *g.kind);
    g.group = calloc(ns, sizeof *g.group);
    g.fused_bn = calloc(ns, sizeof *g.fused_bn);
    g.fused_act = calloc(ns, sizeof *g.fused_act);
    g.final_out = calloc(ns, sizeof *g.final_out);
    g.shared_off = calloc(ns, sizeof *g.shared_off);
    g.pack_off = calloc(ns, sizeof *g.pack_off);
    int rc = -1;
    if (g.root && g.consumers && g.materialize && g.producer && g.tile_off && g.kind && g.group &&
        g.fused_bn && g.fused_act && g.final_out && g.shared_off && g.pack_off) {
        for (size_t i = 0; i < nt; i++) g.tile_off[i] = -1;
        classify(&g);
        fuse(&g);
        if (plan(&g) == 0) {
            emit_header(&g);
            emit_program(&g);
            rc = g.b.oom ? -1 : 0;
        }
    }
    if (rc == 0) {
        out->text = g.b.p;
        out->length = g.b.n;
        for (int s = 0; s < prog->n_steps; s++)
            out->specialized_steps += g.kind[s] != STEP_FALLBACK;
    } else {
        free(g.b.p);
    }
    free(g.root);
    free(g.consumers);
    free(g.materialize);
    free(g.producer);
    free(g.tile_off);
    free(g.kind);
    free(g.group);
    free(g.fused_bn);
    free(g.fused_act);
    free(g.final_out);
    free(g.shared_off);
    free(g.pack_off);
    free(g.tile_images);
    return rc;
}
