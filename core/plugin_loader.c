#include "plugin_loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"

#ifndef NNOPT_PLUGIN_BUILD_DIR
#define NNOPT_PLUGIN_BUILD_DIR ""
#endif
#ifndef NNOPT_PLUGIN_INSTALL_DIR
#define NNOPT_PLUGIN_INSTALL_DIR ""
#endif

static void add_dir_list(nnopt_plugin_search *s, const char *list) {
    if (!list) return;
    const char *p = list;
    while (*p && s->n_dirs < NNOPT_MAX_SEARCH_DIRS) {
        size_t len = strcspn(p, ":");
        /* Trim spaces so "a, b" style lists written by hand work too. */
        const char *start = p, *end = p + len;
        while (start < end && (*start == ' ' || *start == '\t')) start++;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
        if (end > start) s->dirs[s->n_dirs++] = strndup(start, (size_t)(end - start));
        p += len;
        if (*p == ':') p++;
    }
}

void nnopt_plugin_search_init(nnopt_plugin_search *s, const char *ini_path_list) {
    memset(s, 0, sizeof *s);
    add_dir_list(s, ini_path_list);
    add_dir_list(s, getenv("NNOPT_PLUGIN_PATH"));
    add_dir_list(s, NNOPT_PLUGIN_BUILD_DIR);
    add_dir_list(s, NNOPT_PLUGIN_INSTALL_DIR);
}

void nnopt_plugin_search_free(nnopt_plugin_search *s) {
    for (int i = 0; i < s->n_dirs; i++) free(s->dirs[i]);
    s->n_dirs = 0;
}

void nnopt_plugin_search_describe(const nnopt_plugin_search *s, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < s->n_dirs && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", s->dirs[i]);
    if (s->n_dirs == 0) snprintf(buf, size, "(no folders)");
}

/* The sizes of the ABI 1.0 structs: the least a plugin may declare. Entries
 * appended in later minors are read only when a plugin's struct_size covers
 * them, so plugins built against 1.0 keep loading. */
#define NNOPT_DESC_SIZE_1_0 NNOPT_END_OF(nnopt_plugin_desc, vtable)
#define NNOPT_BACKEND_VTABLE_SIZE_1_0 NNOPT_END_OF(nnopt_backend_vtable, describe)
#define NNOPT_MODEL_VTABLE_SIZE_1_0 NNOPT_END_OF(nnopt_model_vtable, build)
#define NNOPT_TECHNIQUE_VTABLE_SIZE_1_0 NNOPT_END_OF(nnopt_technique_vtable, report)

/* Loaded plugins, kept for the life of the process (never dlclose'd). */
static struct {
    pthread_mutex_t lock;
    nnopt_plugin **items; /* each allocated once, so handed-out pointers stay valid */
    int n, cap;
} loaded = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0};

static const nnopt_plugin *find_loaded(const char *path) {
    for (int i = 0; i < loaded.n; i++)
        if (strcmp(loaded.items[i]->path, path) == 0) return loaded.items[i];
    return NULL;
}

static nnopt_status check_descriptor(const char *path, const nnopt_plugin_desc *d,
                                     nnopt_error *err) {
    if (!d)
        return nnopt_error_set(err, NNOPT_STATUS_PLUGIN, "%s: descriptor function returned NULL",
                               path);
    if (d->abi_major != NNOPT_ABI_MAJOR || d->abi_minor > NNOPT_ABI_MINOR)
        return nnopt_error_set(err, NNOPT_STATUS_ABI_MISMATCH,
                               "%s: ABI mismatch: plugin built for nnopt ABI %u.%u, this core "
                               "supports %d.0 to %d.%d (rebuild the plugin against this SDK)",
                               path, d->abi_major, d->abi_minor, NNOPT_ABI_MAJOR, NNOPT_ABI_MAJOR,
                               NNOPT_ABI_MINOR);
    /* Fields we read must lie within the struct the plugin was built with. */
    if (d->struct_size < NNOPT_DESC_SIZE_1_0)
        return nnopt_error_set(err, NNOPT_STATUS_ABI_MISMATCH,
                               "%s: descriptor is %u bytes, expected at least %zu", path,
                               d->struct_size, NNOPT_DESC_SIZE_1_0);
    if (d->kind != NNOPT_PLUGIN_BACKEND && d->kind != NNOPT_PLUGIN_MODEL &&
        d->kind != NNOPT_PLUGIN_TECHNIQUE)
        return nnopt_error_set(err, NNOPT_STATUS_PLUGIN, "%s: unknown plugin kind %d", path,
                               (int)d->kind);
    if (!d->name || !d->name[0] || !d->version || !d->vtable)
        return nnopt_error_set(err, NNOPT_STATUS_PLUGIN,
                               "%s: descriptor lacks a name, version or function table", path);
    uint32_t vt_size = *(const uint32_t *)d->vtable;
    size_t need = d->kind == NNOPT_PLUGIN_BACKEND ? NNOPT_BACKEND_VTABLE_SIZE_1_0
                  : d->kind == NNOPT_PLUGIN_MODEL ? NNOPT_MODEL_VTABLE_SIZE_1_0
                                                  : NNOPT_TECHNIQUE_VTABLE_SIZE_1_0;
    if (vt_size < need)
        return nnopt_error_set(err, NNOPT_STATUS_ABI_MISMATCH,
                               "%s: %s function table is %u bytes, expected %zu", path,
                               nnopt_plugin_kind_name(d->kind), vt_size, need);
    for (uint32_t i = 0; i < d->n_params; i++) {
        const char *why = nnopt_param_spec_check(&d->params[i]);
        if (why)
            return nnopt_error_set(err, NNOPT_STATUS_PLUGIN, "%s: parameter '%s': %s", path,
                                   d->params[i].name ? d->params[i].name : "?", why);
    }
    return NNOPT_OK;
}

/* OpenMP threads (the blis backend's, BLIS's own) spin only briefly before
 * they sleep. libgomp's default spin (300,000 rounds) is a disaster where
 * another process wants the cores: a spinning thread burns the time slice of
 * the thread it waits for, and LeNet-5 steps took 20-50x longer at load 6-8
 * on 2 cores. Never spinning costs 25-35% on a quiet machine; 2,000 rounds
 * kept quiet-machine speed (within 4%) and matched passive waiting beside
 * CPU hogs (docs/backend-blis.md). The runtime reads this once, when a
 * plugin first pulls it in, so it is set before any dlopen; a user's own
 * OMP_WAIT_POLICY or GOMP_SPINCOUNT wins. */
static void limit_openmp_spinning(void) {
    if (!getenv("OMP_WAIT_POLICY")) setenv("GOMP_SPINCOUNT", "2000", 0);
}

static nnopt_status load_locked(const char *path, const nnopt_plugin **out, nnopt_error *err) {
    const nnopt_plugin *known = find_loaded(path);
    if (known) {
        *out = known;
        return NNOPT_OK;
    }
    limit_openmp_spinning();
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle)
        return nnopt_error_set(err, NNOPT_STATUS_PLUGIN, "%s: cannot load: %s", path, dlerror());
    nnopt_plugin_desc_fn fn;
    void *sym = dlsym(handle, NNOPT_PLUGIN_SYMBOL);
    memcpy(&fn, &sym, sizeof fn); /* object -> function pointer without a cast warning */
    if (!fn) {
        dlclose(handle); /* nothing of it was used yet */
        return nnopt_error_set(err, NNOPT_STATUS_PLUGIN, "%s: not an nnopt plugin (no '%s' symbol)",
                               path, NNOPT_PLUGIN_SYMBOL);
    }
    const nnopt_plugin_desc *d = fn();
    nnopt_status st = check_descriptor(path, d, err);
    if (st != NNOPT_OK) return st; /* keep it mapped: its code ran */
    if (d->init) {
        nnopt_plugin_error_take();
        st = d->init(nnopt_host_api_get());
        if (st != NNOPT_OK) {
            const char *why = nnopt_plugin_error_take();
            return nnopt_error_set(err, NNOPT_STATUS_INIT_FAILED, "%s: init failed: %s", path,
                                   why[0] ? why : nnopt_status_name(st));
        }
    }
    if (loaded.n == loaded.cap) {
        int cap = loaded.cap ? loaded.cap * 2 : 16;
        nnopt_plugin **items = realloc(loaded.items, (size_t)cap * sizeof *items);
        if (!items) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
        loaded.items = items;
        loaded.cap = cap;
    }
    nnopt_plugin *p = malloc(sizeof *p);
    if (!p) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    loaded.items[loaded.n++] = p;
    p->path = strdup(path);
    p->desc = d;
    *out = p;
    return NNOPT_OK;
}

nnopt_status nnopt_plugin_load_file(const char *path, const nnopt_plugin **out, nnopt_error *err) {
    pthread_mutex_lock(&loaded.lock);
    nnopt_status st = load_locked(path, out, err);
    pthread_mutex_unlock(&loaded.lock);
    return st;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

nnopt_status nnopt_plugin_load(const nnopt_plugin_search *s, nnopt_plugin_kind kind,
                               const char *name, const nnopt_plugin **out, nnopt_error *err) {
    char path[4096];
    const char *kind_name = nnopt_plugin_kind_name(kind);
    int found = 0;
    if (strchr(name, '/')) {
        snprintf(path, sizeof path, "%s", name);
        if (!file_exists(path))
            return nnopt_error_set(err, NNOPT_STATUS_PLUGIN, "%s plugin '%s': no such file",
                                   kind_name, name);
        found = 1;
    } else {
        for (int i = 0; i < s->n_dirs && !found; i++) {
            snprintf(path, sizeof path, "%s/nnopt_%s_%s.so", s->dirs[i], kind_name, name);
            found = file_exists(path);
        }
    }
    if (!found) {
        char where[2048];
        nnopt_plugin_search_describe(s, where, sizeof where);
        return nnopt_error_set(err, NNOPT_STATUS_PLUGIN,
                               "%s plugin '%s' not found (looked for nnopt_%s_%s.so in: %s)",
                               kind_name, name, kind_name, name, where);
    }
    nnopt_status st = nnopt_plugin_load_file(path, out, err);
    if (st != NNOPT_OK) return st;
    const nnopt_plugin_desc *d = (*out)->desc;
    if (d->kind != kind)
        return nnopt_error_set(err, NNOPT_STATUS_PLUGIN,
                               "%s: wrong kind: '%s' is a %s plugin, a %s was expected", path,
                               d->name, nnopt_plugin_kind_name(d->kind), kind_name);
    if (!strchr(name, '/') && strcmp(d->name, name) != 0)
        return nnopt_error_set(err, NNOPT_STATUS_PLUGIN,
                               "%s: plugin calls itself '%s', its file name says '%s'", path,
                               d->name, name);
    return NNOPT_OK;
}

static int has_plugin_name(const char *file) {
    size_t n = strlen(file);
    return strncmp(file, "nnopt_", 6) == 0 && n > 3 && strcmp(file + n - 3, ".so") == 0;
}

static int seen_before(char **names, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0) return 1;
    return 0;
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int nnopt_plugin_scan(const nnopt_plugin_search *s, void (*fn)(const nnopt_plugin *p, void *user),
                      void (*on_error)(const nnopt_error *e, void *user), void *user) {
    char **seen = NULL;
    int n_seen = 0, found = 0;
    for (int i = 0; i < s->n_dirs; i++) {
        DIR *dir = opendir(s->dirs[i]);
        if (!dir) continue;
        char **files = NULL;
        int n_files = 0;
        struct dirent *e;
        while ((e = readdir(dir)) != NULL) {
            if (!has_plugin_name(e->d_name) || seen_before(seen, n_seen, e->d_name)) continue;
            files = realloc(files, (size_t)(n_files + 1) * sizeof *files);
            files[n_files++] = strdup(e->d_name);
        }
        closedir(dir);
        qsort(files, (size_t)n_files, sizeof *files, compare_strings);
        for (int f = 0; f < n_files; f++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", s->dirs[i], files[f]);
            nnopt_error err = {0};
            const nnopt_plugin *p;
            if (nnopt_plugin_load_file(path, &p, &err) == NNOPT_OK) {
                fn(p, user);
                found++;
            } else if (on_error) {
                on_error(&err, user);
            }
            seen = realloc(seen, (size_t)(n_seen + 1) * sizeof *seen);
            seen[n_seen++] = files[f];
        }
        free(files);
    }
    for (int i = 0; i < n_seen; i++) free(seen[i]);
    free(seen);
    return found;
}
