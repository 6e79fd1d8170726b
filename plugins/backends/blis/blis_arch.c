/* Which BLIS kernels to run. Debian's BLIS 0.9 does not know recent CPUs
 * (Zen 5 falls back to the slow generic kernels), so the backend decides from
 * cpuid itself and hands BLIS its choice through BLIS_ARCH_TYPE, which BLIS
 * reads once, when it initialises. */
#include <blis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blis_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define BLIS_ARCH_X86 1
#endif

typedef struct cpu_features {
    char vendor[13];
    unsigned family, model;
    int ssse3, sse41, avx, fma, avx2, avx512; /* avx512: F+DQ+BW+VL+CD with OS zmm state */
    int avx512_bf16;                          /* vdpbf16ps, vcvtne2ps2bf16 (and avx512) */
} cpu_features;

static void cpu_features_read(cpu_features *f) {
    memset(f, 0, sizeof *f);
#ifdef BLIS_ARCH_X86
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return;
    const unsigned max_leaf = eax;
    memcpy(f->vendor, &ebx, 4);
    memcpy(f->vendor + 4, &edx, 4);
    memcpy(f->vendor + 8, &ecx, 4);
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return;
    const unsigned base_family = (eax >> 8) & 0xf, base_model = (eax >> 4) & 0xf;
    f->family = base_family == 0xf ? base_family + ((eax >> 20) & 0xff) : base_family;
    f->model = (base_family == 0xf || base_family == 0x6) ? (((eax >> 16) & 0xf) << 4) | base_model
                                                          : base_model;
    f->ssse3 = (ecx >> 9) & 1;
    f->sse41 = (ecx >> 19) & 1;
    const int osxsave = (ecx >> 27) & 1, cpu_avx = (ecx >> 28) & 1, cpu_fma = (ecx >> 12) & 1;
    /* The OS must save the wide registers too (XCR0), or AVX code faults. */
    unsigned long long xcr0 = 0;
    if (osxsave) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = ((unsigned long long)hi << 32) | lo;
    }
    const int os_ymm = (xcr0 & 0x6) == 0x6, os_zmm = (xcr0 & 0xe6) == 0xe6;
    f->avx = cpu_avx && os_ymm;
    f->fma = cpu_fma && f->avx;
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, eax, ebx, ecx, edx);
        f->avx2 = ((ebx >> 5) & 1) && f->avx;
        const unsigned avx512_bits = (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31);
        f->avx512 = (ebx & avx512_bits) == avx512_bits && os_zmm;
        const unsigned max_subleaf = eax;
        if (max_subleaf >= 1) {
            __cpuid_count(7, 1, eax, ebx, ecx, edx);
            f->avx512_bf16 = ((eax >> 5) & 1) && f->avx512;
        }
    }
#endif
}

/* The x86-64 sub-configurations the backend can ask for, the instructions
 * their kernels use, and whether the installed BLIS was built with them. */
typedef struct arch_entry {
    const char *name;
    arch_t id;
    int built_in;
    int needs_avx512, needs_avx2_fma, needs_avx, needs_sse41;
} arch_entry;

#ifdef BLIS_CONFIG_SKX
#define BUILT_SKX 1
#else
#define BUILT_SKX 0
#endif
#ifdef BLIS_CONFIG_ZEN3
#define BUILT_ZEN3 1
#else
#define BUILT_ZEN3 0
#endif
#ifdef BLIS_CONFIG_ZEN2
#define BUILT_ZEN2 1
#else
#define BUILT_ZEN2 0
#endif
#ifdef BLIS_CONFIG_ZEN
#define BUILT_ZEN 1
#else
#define BUILT_ZEN 0
#endif
#ifdef BLIS_CONFIG_HASWELL
#define BUILT_HASWELL 1
#else
#define BUILT_HASWELL 0
#endif
#ifdef BLIS_CONFIG_SANDYBRIDGE
#define BUILT_SANDYBRIDGE 1
#else
#define BUILT_SANDYBRIDGE 0
#endif
#ifdef BLIS_CONFIG_PENRYN
#define BUILT_PENRYN 1
#else
#define BUILT_PENRYN 0
#endif
#ifdef BLIS_CONFIG_GENERIC
#define BUILT_GENERIC 1
#else
#define BUILT_GENERIC 0
#endif

static const arch_entry arch_table[] = {
    {"skx", BLIS_ARCH_SKX, BUILT_SKX, 1, 1, 1, 1},
    {"zen3", BLIS_ARCH_ZEN3, BUILT_ZEN3, 0, 1, 1, 1},
    {"zen2", BLIS_ARCH_ZEN2, BUILT_ZEN2, 0, 1, 1, 1},
    {"zen", BLIS_ARCH_ZEN, BUILT_ZEN, 0, 1, 1, 1},
    {"haswell", BLIS_ARCH_HASWELL, BUILT_HASWELL, 0, 1, 1, 1},
    {"sandybridge", BLIS_ARCH_SANDYBRIDGE, BUILT_SANDYBRIDGE, 0, 0, 1, 1},
    {"penryn", BLIS_ARCH_PENRYN, BUILT_PENRYN, 0, 0, 0, 1},
    {"generic", BLIS_ARCH_GENERIC, BUILT_GENERIC, 0, 0, 0, 0},
};
enum { ARCH_COUNT = sizeof arch_table / sizeof arch_table[0] };

static const arch_entry *arch_find(const char *name) {
    for (int i = 0; i < ARCH_COUNT; i++)
        if (strcmp(arch_table[i].name, name) == 0) return &arch_table[i];
    return NULL;
}

static int arch_runs_here(const arch_entry *a, const cpu_features *f) {
    return (!a->needs_avx512 || f->avx512) && (!a->needs_avx2_fma || (f->avx2 && f->fma)) &&
           (!a->needs_avx || f->avx) && (!a->needs_sse41 || (f->ssse3 && f->sse41));
}

/* The preferred kernels for this CPU, most specific first; the first one that
 * is built in and runs here wins. On AMD Zen 3 and later (Zen 4 and 5
 * included) the zen3 kernels beat skx on the small, skinny GEMMs of CNN
 * layers (zen3 has small-matrix "sup" kernels, skx has none in BLIS 0.9);
 * see docs/backend-blis.md for the measurements. */
static const char *arch_auto(const cpu_features *f, char *reason, size_t reason_size) {
    const char *order[6] = {NULL};
    int n = 0;
    const int amd =
        strcmp(f->vendor, "AuthenticAMD") == 0 || strcmp(f->vendor, "HygonGenuine") == 0;
    if (amd && f->family >= 0x19) order[n++] = "zen3";
    if (amd && f->family == 0x17) order[n++] = f->model >= 0x30 ? "zen2" : "zen";
    if (!amd && f->avx512) order[n++] = "skx";
    order[n++] = "haswell";
    order[n++] = "sandybridge";
    order[n++] = "penryn";
    for (int i = 0; i < n; i++) {
        const arch_entry *a = arch_find(order[i]);
        if (a && a->built_in && arch_runs_here(a, f)) {
            snprintf(reason, reason_size, "auto: %s family 0x%x model 0x%x%s",
                     f->vendor[0] ? f->vendor : "unknown CPU", f->family, f->model,
                     f->avx512 ? ", avx512" : (f->avx2 ? ", avx2" : ""));
            return a->name;
        }
    }
    snprintf(reason, reason_size, "auto: no optimised kernels for this CPU");
    return "generic";
}

/* BLIS picks its kernels once per process; these remember what we asked for. */
static pthread_mutex_t arch_lock = PTHREAD_MUTEX_INITIALIZER;
static int arch_initialised;

/* Exports BLIS_ARCH_TYPE only around BLIS's initialisation and restores the
 * caller's environment afterwards. */
static void blis_init_with_arch(arch_t id) {
    const char *previous = getenv("BLIS_ARCH_TYPE");
    char *saved = previous ? strdup(previous) : NULL;
    char value[16];
    snprintf(value, sizeof value, "%d", (int)id);
    setenv("BLIS_ARCH_TYPE", value, 1);
    bli_init(); /* must precede bli_arch_query_id, which validates the id against the gks */
    if (saved) {
        setenv("BLIS_ARCH_TYPE", saved, 1);
        free(saved);
    } else {
        unsetenv("BLIS_ARCH_TYPE");
    }
}

nnopt_status blis_arch_select(blis_backend *be, const char *requested) {
    cpu_features features;
    cpu_features_read(&features);
    char reason[96];
    const char *wanted;
    const int automatic = requested == NULL || strcmp(requested, "auto") == 0;
    if (automatic) {
        wanted = arch_auto(&features, reason, sizeof reason);
    } else {
        const arch_entry *a = arch_find(requested);
        if (!a) {
            be->host->set_error("blis: unknown arch '%s'", requested);
            return NNOPT_STATUS_INVALID_ARGUMENT;
        }
        if (!a->built_in) {
            be->host->set_error("blis: the installed BLIS was built without the '%s' kernels",
                                a->name);
            return NNOPT_STATUS_DEVICE;
        }
        /* BLIS would start and then die on an illegal instruction. */
        if (!arch_runs_here(a, &features)) {
            be->host->set_error("blis: arch=%s needs instructions this CPU lacks", a->name);
            return NNOPT_STATUS_DEVICE;
        }
        wanted = a->name;
        snprintf(reason, sizeof reason, "arch=%s", a->name);
    }

    pthread_mutex_lock(&arch_lock);
    if (!arch_initialised) {
        blis_init_with_arch(arch_find(wanted)->id);
        arch_initialised = 1;
    }
    pthread_mutex_unlock(&arch_lock);

    /* BLIS's own answer: another instance (or the application) may have
     * initialised it earlier with different kernels. */
    const char *active = bli_arch_string(bli_arch_query_id());
    snprintf(be->kernels, sizeof be->kernels, "%s", active);
    if (strcmp(active, wanted) != 0) {
        if (!automatic) {
            be->host->set_error("blis: arch=%s cannot take effect: BLIS already runs the %s "
                                "kernels in this process",
                                wanted, active);
            return NNOPT_STATUS_DEVICE;
        }
        be->host->log(NNOPT_LOG_WARN,
                      "blis: wanted the %s kernels but BLIS was already initialised with %s",
                      wanted, active);
        snprintf(reason, sizeof reason, "already initialised; auto wanted %s", wanted);
    }
    snprintf(be->arch_reason, sizeof be->arch_reason, "%s", reason);
    return NNOPT_OK;
}

int blis_cpu_has_avx512_bf16(void) {
    cpu_features f;
    cpu_features_read(&f);
    return f.avx512_bf16;
}
