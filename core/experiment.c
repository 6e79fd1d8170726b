#include "experiment.h"

#include "backend.h"

#include <ctype.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

/* Adds one more line to a multi-error message (all missing plugins at once). */
static void error_append(nnopt_error *all, const nnopt_error *one) {
    size_t used = strlen(all->message);
    if (all->status == NNOPT_OK) all->status = one->status;
    snprintf(all->message + used, sizeof all->message - used, "%s%s", used ? "\n" : "",
             one->message);
}

static int section_line(const nnopt_ini *ini, const char *section) {
    for (int i = 0; i < ini->n_sections; i++)
        if (strcmp(ini->sections[i].name, section) == 0) return ini->sections[i].line;
    return 0;
}

static void where_of(const nnopt_ini *ini, int line, char *buf, size_t size) {
    nnopt_ini_where(ini, line, buf, size);
}

static int in_list(const char *key, const char *const *list) {
    for (int i = 0; list && list[i]; i++)
        if (strcmp(key, list[i]) == 0) return 1;
    return 0;
}

/* Sets every entry of `section` into cfg except the keys in `skip`. */
static nnopt_status fill_section(const nnopt_ini *ini, const char *section, const char *const *skip,
                                 nnopt_config *cfg, nnopt_error *err) {
    for (int i = 0; i < ini->n_entries; i++) {
        const nnopt_ini_entry *e = &ini->entries[i];
        if (strcmp(e->section, section) != 0 || in_list(e->key, skip)) continue;
        char where[1200];
        where_of(ini, e->line, where, sizeof where);
        nnopt_status st = nnopt_config_set(cfg, e->key, e->value, where, err);
        if (st != NNOPT_OK) return st;
    }
    return NNOPT_OK;
}

static nnopt_status finish_section(const nnopt_ini *ini, const char *section, nnopt_config *cfg,
                                   nnopt_error *err) {
    char where[1200];
    where_of(ini, section_line(ini, section), where, sizeof where);
    return nnopt_config_finish(cfg, where, err);
}

static nnopt_status core_section(const nnopt_ini *ini, const char *section,
                                 const nnopt_param_spec *schema, int n, nnopt_config **out,
                                 nnopt_error *err) {
    char owner[80];
    snprintf(owner, sizeof owner, "[%s]", section);
    *out = nnopt_config_create(schema, n, owner);
    if (!*out) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    nnopt_status st = fill_section(ini, section, NULL, *out, err);
    return st == NNOPT_OK ? finish_section(ini, section, *out, err) : st;
}

static const char *entry_value(const nnopt_ini *ini, const char *section, const char *key,
                               int *line) {
    for (int i = 0; i < ini->n_entries; i++)
        if (strcmp(ini->entries[i].section, section) == 0 &&
            strcmp(ini->entries[i].key, key) == 0) {
            if (line) *line = ini->entries[i].line;
            return ini->entries[i].value;
        }
    return NULL;
}

/* "KIND" or "KIND NAME" -> NAME (or `plain` for the bare section); NULL otherwise. */
static const char *section_name(const char *section, const char *kind, const char *plain) {
    size_t n = strlen(kind);
    if (strcmp(section, kind) == 0) return plain;
    if (strncmp(section, kind, n) == 0 && section[n] == ' ' && section[n + 1])
        return section + n + 1;
    return NULL;
}

static nnopt_status check_sections(const nnopt_ini *ini, nnopt_error *err) {
    static const char *const fixed[] = {"experiment", "plugins", "data", "training", NULL};
    static const char *const named[] = {"backend", "model", "technique", "run", "compare", NULL};
    for (int i = 0; i < ini->n_sections; i++) {
        const char *s = ini->sections[i].name;
        int ok = in_list(s, fixed);
        for (int k = 0; named[k] && !ok; k++) ok = section_name(s, named[k], "") != NULL;
        if (ok) continue;
        char where[1200];
        where_of(ini, ini->sections[i].line, where, sizeof where);
        return nnopt_error_set(err, NNOPT_STATUS_CONFIG,
                               "%s: unknown section [%s] (known: experiment, plugins, data, "
                               "training, backend [NAME], model [NAME], technique NAME, run NAME, "
                               "compare NAME)",
                               where, s);
    }
    return NNOPT_OK;
}

/* Loads a plugin for a spec; a failure is appended to `missing` so that every
 * missing plugin is reported at once. Returns 1 when loaded. */
static int load_plugin(nnopt_experiment *e, nnopt_plugin_kind kind, const char *name, int line,
                       const nnopt_plugin **plugin, nnopt_error *missing) {
    nnopt_error one = {0};
    if (nnopt_plugin_load(&e->search, kind, name, plugin, &one) == NNOPT_OK) return 1;
    char where[1200];
    where_of(&e->ini, line, where, sizeof where);
    nnopt_error located = {0};
    nnopt_error_set(&located, one.status, "%s: %s", where, one.message);
    error_append(missing, &located);
    return 0;
}

static nnopt_status plugin_config(nnopt_experiment *e, const char *section, const nnopt_plugin *p,
                                  const char *const *reserved, nnopt_config **cfg,
                                  nnopt_error *err) {
    const nnopt_plugin_desc *d = p->desc;
    char owner[160];
    snprintf(owner, sizeof owner, "[%s] (%s plugin '%s')", section, nnopt_plugin_kind_name(d->kind),
             d->name);
    *cfg = nnopt_config_create(d->params, (int)d->n_params, owner);
    if (!*cfg) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    nnopt_status st = fill_section(&e->ini, section, reserved, *cfg, err);
    return st == NNOPT_OK ? finish_section(&e->ini, section, *cfg, err) : st;
}

/* Config of a plugin with its defaults only (a fallback backend). */
static nnopt_status default_config(const nnopt_plugin *p, nnopt_config **cfg, nnopt_error *err) {
    *cfg = nnopt_config_create(p->desc->params, (int)p->desc->n_params, p->desc->name);
    if (!*cfg) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    return nnopt_config_finish(*cfg, p->desc->name, err);
}

static nnopt_status parse_epochs(const char *value, const char *where, nnopt_plugin_spec *s,
                                 nnopt_error *err) {
    char *end;
    long a = strtol(value, &end, 10), b = a;
    if (*end == '-') b = strtol(end + 1, &end, 10);
    if (*end || a < 1 || b < a)
        return nnopt_error_set(err, NNOPT_STATUS_CONFIG,
                               "%s: bad value '%s' for epochs: expected N or FROM-TO (1-based)",
                               where, value);
    s->epoch_from = (int)a;
    s->epoch_to = (int)b;
    return NNOPT_OK;
}

/* [backend] op_fallback = deny | warn | allow; the reference backend is
 * loaded when ops may fall back to it. */
static nnopt_status parse_op_fallback(nnopt_experiment *e, const char *section,
                                      nnopt_plugin_spec *spec, nnopt_error *missing,
                                      nnopt_error *err) {
    int line = spec->line;
    const char *value = entry_value(&e->ini, section, "op_fallback", &line);
    if (!value || strcmp(value, "deny") == 0) return NNOPT_OK;
    if (strcmp(value, "warn") == 0) {
        spec->op_fallback = NNOPT_OP_FALLBACK_WARN;
    } else if (strcmp(value, "allow") == 0) {
        spec->op_fallback = NNOPT_OP_FALLBACK_ALLOW;
    } else {
        char where[1200];
        where_of(&e->ini, line, where, sizeof where);
        return nnopt_error_set(err, NNOPT_STATUS_CONFIG,
                               "%s: bad value '%s' for op_fallback in [%s] (expected deny, warn "
                               "or allow)",
                               where, value, section);
    }
    if (!load_plugin(e, NNOPT_PLUGIN_BACKEND, "cpu", line, &spec->op_plugin, missing))
        return NNOPT_OK;
    return default_config(spec->op_plugin, &spec->op_cfg, err);
}

/* Every [backend ...], [model ...] and [technique ...] section. */
static nnopt_status plugin_specs(nnopt_experiment *e, nnopt_error *missing, nnopt_error *err) {
    static const char *const backend_reserved[] = {"plugin", "fallback", "op_fallback", NULL};
    static const char *const model_reserved[] = {"plugin", NULL};
    static const char *const technique_reserved[] = {"plugin", "epochs", NULL};
    int has_default_backend = 0;
    for (int i = 0; i < e->ini.n_sections; i++) {
        const char *section = e->ini.sections[i].name, *name;
        nnopt_plugin_spec *spec;
        nnopt_plugin_kind kind;
        const char *const *reserved;
        if ((name = section_name(section, "backend", "default"))) {
            if (e->n_backends == NNOPT_MAX_SPECS) break;
            spec = &e->backends[e->n_backends++];
            kind = NNOPT_PLUGIN_BACKEND;
            reserved = backend_reserved;
            has_default_backend |= strcmp(name, "default") == 0;
        } else if ((name = section_name(section, "model", "model"))) {
            if (e->n_models == NNOPT_MAX_SPECS) break;
            spec = &e->models[e->n_models++];
            kind = NNOPT_PLUGIN_MODEL;
            reserved = model_reserved;
        } else if ((name = section_name(section, "technique", NULL))) {
            if (e->n_techniques == NNOPT_MAX_SPECS) break;
            spec = &e->techniques[e->n_techniques++];
            kind = NNOPT_PLUGIN_TECHNIQUE;
            reserved = technique_reserved;
        } else {
            continue;
        }
        snprintf(spec->name, sizeof spec->name, "%s", name);
        snprintf(spec->section, sizeof spec->section, "%s", section);
        spec->line = e->ini.sections[i].line;
        int line = spec->line;
        const char *plugin = entry_value(&e->ini, section, "plugin", &line);
        char where[1200];
        where_of(&e->ini, line, where, sizeof where);
        if (!plugin && kind == NNOPT_PLUGIN_BACKEND) plugin = "cpu";
        if (!plugin)
            return nnopt_error_set(err, NNOPT_STATUS_CONFIG, "%s: [%s] needs 'plugin = NAME'",
                                   where, section);
        if (!load_plugin(e, kind, plugin, line, &spec->plugin, missing)) continue;
        nnopt_status st = plugin_config(e, section, spec->plugin, reserved, &spec->cfg, err);
        if (st != NNOPT_OK) return st;
        int fline = line;
        const char *fallback = entry_value(&e->ini, section, "fallback", &fline);
        if (kind == NNOPT_PLUGIN_BACKEND && fallback &&
            load_plugin(e, NNOPT_PLUGIN_BACKEND, fallback, fline, &spec->fallback, missing)) {
            st = default_config(spec->fallback, &spec->fallback_cfg, err);
            if (st != NNOPT_OK) return st;
        }
        if (kind == NNOPT_PLUGIN_BACKEND) {
            st = parse_op_fallback(e, section, spec, missing, err);
            if (st != NNOPT_OK) return st;
        }
        const char *epochs = entry_value(&e->ini, section, "epochs", &fline);
        if (kind == NNOPT_PLUGIN_TECHNIQUE && epochs) {
            where_of(&e->ini, fline, where, sizeof where);
            st = parse_epochs(epochs, where, spec, err);
            if (st != NNOPT_OK) return st;
        }
    }
    if (e->n_backends == NNOPT_MAX_SPECS || e->n_models == NNOPT_MAX_SPECS ||
        e->n_techniques == NNOPT_MAX_SPECS)
        return nnopt_error_set(err, NNOPT_STATUS_CONFIG, "%s: more than %d sections of one kind",
                               e->ini.path, NNOPT_MAX_SPECS - 1);
    if (!has_default_backend) {
        /* No [backend]: the reference backend, with its defaults. */
        nnopt_plugin_spec *spec = &e->backends[e->n_backends++];
        snprintf(spec->name, sizeof spec->name, "default");
        snprintf(spec->section, sizeof spec->section, "backend");
        if (load_plugin(e, NNOPT_PLUGIN_BACKEND, "cpu", 0, &spec->plugin, missing))
            return default_config(spec->plugin, &spec->cfg, err);
    }
    return NNOPT_OK;
}

static int find_spec(const nnopt_plugin_spec *specs, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(specs[i].name, name) == 0) return i;
    return -1;
}

/* Splits "a, b,c" into trimmed items; returns the count (at most max). */
static int split_list(const char *value, char items[][96], int max) {
    int n = 0;
    const char *p = value;
    while (*p && n < max) {
        size_t len = strcspn(p, ",");
        const char *a = p, *b = p + len;
        while (a < b && isspace((unsigned char)*a)) a++;
        while (b > a && isspace((unsigned char)b[-1])) b--;
        if (b > a) snprintf(items[n++], 96, "%.*s", (int)(b - a), a);
        p += len;
        if (*p == ',') p++;
    }
    return n;
}

static const char *const run_keys[] = {"model",     "backend",         "techniques",      "after",
                                       "init_from", "load_checkpoint", "save_checkpoint", NULL};

/* A backend named in a run: a [backend NAME] section, else a plugin name
 * used with its defaults (added as a spec). */
static int resolve_backend(nnopt_experiment *e, const char *name, int line, nnopt_error *missing,
                           nnopt_error *err) {
    int i = find_spec(e->backends, e->n_backends, name);
    if (i >= 0) return i;
    if (e->n_backends == NNOPT_MAX_SPECS) {
        nnopt_error_set(err, NNOPT_STATUS_CONFIG, "%s: too many backends", e->ini.path);
        return -2;
    }
    nnopt_plugin_spec *spec = &e->backends[e->n_backends];
    snprintf(spec->name, sizeof spec->name, "%.63s", name);
    snprintf(spec->section, sizeof spec->section, "backend %.63s", name);
    spec->line = line;
    if (!load_plugin(e, NNOPT_PLUGIN_BACKEND, name, line, &spec->plugin, missing)) return -1;
    if (default_config(spec->plugin, &spec->cfg, err) != NNOPT_OK) return -2;
    return e->n_backends++;
}

static nnopt_status add_run(nnopt_experiment *e, const char *name, const char *section, int line,
                            int model, int backend, nnopt_error *err) {
    if (e->n_runs == NNOPT_MAX_RUNS)
        return nnopt_error_set(err, NNOPT_STATUS_CONFIG, "%s: more than %d runs", e->ini.path,
                               NNOPT_MAX_RUNS);
    nnopt_run_spec *r = &e->runs[e->n_runs++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->section, sizeof r->section, "%s", section);
    r->line = line;
    r->model = model;
    r->backend = backend;
    r->init_from = -1;
    char owner[120];
    snprintf(owner, sizeof owner, "[%s] (training keys)", section);
    r->training = nnopt_config_create(nnopt_training_schema, nnopt_training_schema_count, owner);
    if (!r->training) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    nnopt_status st = fill_section(&e->ini, "training", NULL, r->training, err);
    if (st == NNOPT_OK && strcmp(section, "training") != 0)
        st = fill_section(&e->ini, section, run_keys, r->training, err);
    return st == NNOPT_OK ? finish_section(&e->ini, section, r->training, err) : st;
}

/* [run NAME] sections (or one implicit run per model), sweeps expanded. */
static nnopt_status run_specs(nnopt_experiment *e, nnopt_error *missing, nnopt_error *err) {
    int explicit_runs = 0;
    for (int i = 0; i < e->ini.n_sections; i++) {
        const char *section = e->ini.sections[i].name, *name = section_name(section, "run", NULL);
        if (!name) continue;
        explicit_runs++;
        int line = e->ini.sections[i].line, mline = line, bline = line;
        char where[1200];
        const char *model_list = entry_value(&e->ini, section, "model", &mline);
        const char *backend_list = entry_value(&e->ini, section, "backend", &bline);
        char models[NNOPT_MAX_SPECS][96], backends[NNOPT_MAX_SPECS][96];
        int n_models = 1, n_backends = 1;
        if (model_list) {
            n_models = split_list(model_list, models, NNOPT_MAX_SPECS);
        } else if (e->n_models == 1) {
            snprintf(models[0], 96, "%s", e->models[0].name);
        } else {
            where_of(&e->ini, line, where, sizeof where);
            return nnopt_error_set(err, NNOPT_STATUS_CONFIG,
                                   "%s: [%s] needs 'model = NAME' (a [model NAME] section)", where,
                                   section);
        }
        if (backend_list)
            n_backends = split_list(backend_list, backends, NNOPT_MAX_SPECS);
        else
            snprintf(backends[0], 96, "default");
        for (int m = 0; m < n_models; m++) {
            int model = find_spec(e->models, e->n_models, models[m]);
            if (model < 0) {
                where_of(&e->ini, mline, where, sizeof where);
                return nnopt_error_set(err, NNOPT_STATUS_CONFIG,
                                       "%s: [%s] names model '%s', but there is no [model %s]",
                                       where, section, models[m], models[m]);
            }
            for (int b = 0; b < n_backends; b++) {
                int backend = resolve_backend(e, backends[b], bline, missing, err);
                if (backend == -2) return err->status;
                if (backend < 0) continue; /* reported in `missing` */
                char run_name[96];
                /* A sweep names each run after the values it took. */
                snprintf(run_name, sizeof run_name, "%.40s%s%.24s%s%.24s", name,
                         n_models > 1 ? "@" : "", n_models > 1 ? models[m] : "",
                         n_backends > 1 ? "@" : "", n_backends > 1 ? backends[b] : "");
                nnopt_status st = add_run(e, run_name, section, line, model, backend, err);
                if (st != NNOPT_OK) return st;
            }
        }
    }
    if (explicit_runs == 0)
        for (int m = 0; m < e->n_models; m++) {
            nnopt_status st = add_run(e, e->models[m].name, "training", e->models[m].line, m,
                                      find_spec(e->backends, e->n_backends, "default"), err);
            if (st != NNOPT_OK) return st;
        }
    return NNOPT_OK;
}

/* Runs whose name is `name`, or that a sweep derived from it ("name@..."). */
static int runs_named(const nnopt_experiment *e, const char *name, int *out, int max) {
    int n = 0;
    size_t len = strlen(name);
    for (int i = 0; i < e->n_runs && n < max; i++)
        if (strcmp(e->runs[i].name, name) == 0 ||
            (strncmp(e->runs[i].name, name, len) == 0 && e->runs[i].name[len] == '@'))
            out[n++] = i;
    return n;
}

static nnopt_status add_dep(nnopt_experiment *e, nnopt_run_spec *r, const char *name, int line,
                            const char *why, nnopt_error *err) {
    int found[NNOPT_MAX_RUNS];
    int n = runs_named(e, name, found, NNOPT_MAX_RUNS);
    if (n == 0) {
        char where[1200];
        where_of(&e->ini, line, where, sizeof where);
        return nnopt_error_set(err, NNOPT_STATUS_CONFIG, "%s: run '%s' %s '%s', which is not a run",
                               where, r->name, why, name);
    }
    for (int i = 0; i < n && r->n_deps < NNOPT_MAX_DEPS; i++) r->deps[r->n_deps++] = found[i];
    return NNOPT_OK;
}

/* Techniques, `after`, `init_from` and technique dependencies of every run. */
static nnopt_status run_links(nnopt_experiment *e, nnopt_error *err) {
    for (int i = 0; i < e->n_runs; i++) {
        nnopt_run_spec *r = &e->runs[i];
        char items[NNOPT_MAX_RUN_TECHNIQUES][96], where[1200];
        int line = r->line;
        const char *list = strcmp(r->section, "training")
                               ? entry_value(&e->ini, r->section, "techniques", &line)
                               : NULL;
        int n = list ? split_list(list, items, NNOPT_MAX_RUN_TECHNIQUES) : 0;
        for (int k = 0; k < n; k++) {
            int t = find_spec(e->techniques, e->n_techniques, items[k]);
            where_of(&e->ini, line, where, sizeof where);
            if (t < 0)
                return nnopt_error_set(err, NNOPT_STATUS_CONFIG,
                                       "%s: run '%s' uses technique '%s', but there is no "
                                       "[technique %s]",
                                       where, r->name, items[k], items[k]);
            if (!e->techniques[t].plugin) continue; /* missing plugin, reported already */
            r->techniques[r->n_techniques++] = t;
            /* Ask the technique which runs it needs (a teacher, say). */
            const nnopt_technique_vtable *vt = e->techniques[t].plugin->desc->vtable;
            void *ctx = NULL;
            nnopt_plugin_error_take();
            if (vt->create(nnopt_host_api_get(), e->techniques[t].cfg, &ctx) != NNOPT_OK) {
                const char *why = nnopt_plugin_error_take();
                return nnopt_error_set(err, NNOPT_STATUS_CONFIG, "%s: [technique %s]: %s", where,
                                       items[k], why);
            }
            const char *deps[NNOPT_MAX_DEPS];
            int n_deps = vt->dependencies ? vt->dependencies(ctx, deps, NNOPT_MAX_DEPS) : 0;
            nnopt_status st = NNOPT_OK;
            for (int d = 0; d < n_deps && d < NNOPT_MAX_DEPS && st == NNOPT_OK; d++)
                st = add_dep(e, r, deps[d], e->techniques[t].line, "needs (technique)", err);
            if (vt->destroy) vt->destroy(ctx);
            if (st != NNOPT_OK) return st;
        }
        if (!strcmp(r->section, "training")) continue;
        line = r->line;
        list = entry_value(&e->ini, r->section, "after", &line);
        n = list ? split_list(list, items, NNOPT_MAX_DEPS) : 0;
        for (int k = 0; k < n; k++) {
            nnopt_status st = add_dep(e, r, items[k], line, "runs after", err);
            if (st != NNOPT_OK) return st;
        }
        const char *load = entry_value(&e->ini, r->section, "load_checkpoint", NULL);
        const char *save = entry_value(&e->ini, r->section, "save_checkpoint", NULL);
        if (load) snprintf(r->load_checkpoint, sizeof r->load_checkpoint, "%s", load);
        if (save) snprintf(r->save_checkpoint, sizeof r->save_checkpoint, "%s", save);
        line = r->line;
        const char *init = entry_value(&e->ini, r->section, "init_from", &line);
        if (init) {
            nnopt_status st = add_dep(e, r, init, line, "starts from", err);
            if (st != NNOPT_OK) return st;
            r->init_from = r->deps[r->n_deps - 1];
        }
    }
    return NNOPT_OK;
}

/* Depth-first topological order in file order; a cycle is a config error. */
static nnopt_status visit(nnopt_experiment *e, int i, int *state, int *n, int *stack, int depth,
                          nnopt_error *err) {
    if (state[i] == 2) return NNOPT_OK;
    stack[depth] = i;
    if (state[i] == 1) {
        char cycle[1024] = "";
        size_t used = 0;
        int start = 0;
        while (stack[start] != i) start++;
        for (int k = start; k <= depth && used < sizeof cycle; k++)
            used += (size_t)snprintf(cycle + used, sizeof cycle - used, "%s%s",
                                     k > start ? " -> " : "", e->runs[stack[k]].name);
        char where[1200];
        where_of(&e->ini, e->runs[i].line, where, sizeof where);
        return nnopt_error_set(err, NNOPT_STATUS_CONFIG,
                               "%s: runs depend on each other in a cycle: %s", where, cycle);
    }
    state[i] = 1;
    for (int d = 0; d < e->runs[i].n_deps; d++) {
        nnopt_status st = visit(e, e->runs[i].deps[d], state, n, stack, depth + 1, err);
        if (st != NNOPT_OK) return st;
    }
    state[i] = 2;
    e->order[(*n)++] = i;
    return NNOPT_OK;
}

static nnopt_status order_runs(nnopt_experiment *e, nnopt_error *err) {
    int state[NNOPT_MAX_RUNS] = {0}, stack[NNOPT_MAX_RUNS + 1], n = 0;
    for (int i = 0; i < e->n_runs; i++) {
        nnopt_status st = visit(e, i, state, &n, stack, 0, err);
        if (st != NNOPT_OK) return st;
    }
    return NNOPT_OK;
}

static nnopt_status compare_specs(nnopt_experiment *e, nnopt_error *err) {
    for (int i = 0; i < e->ini.n_sections; i++) {
        const char *section = e->ini.sections[i].name,
                   *name = section_name(section, "compare", NULL);
        if (!name) continue;
        if (e->n_compares == NNOPT_MAX_SPECS)
            return nnopt_error_set(err, NNOPT_STATUS_CONFIG, "%s: too many [compare] sections",
                                   e->ini.path);
        nnopt_compare_spec *c = &e->compares[e->n_compares++];
        snprintf(c->name, sizeof c->name, "%s", name);
        c->line = e->ini.sections[i].line;
        char where[1200];
        for (int k = 0; k < e->ini.n_entries; k++) {
            const nnopt_ini_entry *en = &e->ini.entries[k];
            if (strcmp(en->section, section) == 0 && strcmp(en->key, "runs") != 0 &&
                strcmp(en->key, "baseline") != 0) {
                where_of(&e->ini, en->line, where, sizeof where);
                return nnopt_error_set(err, NNOPT_STATUS_CONFIG,
                                       "%s: unknown key '%s' in [%s] (known: runs, baseline)",
                                       where, en->key, section);
            }
        }
        int line = c->line;
        const char *list = entry_value(&e->ini, section, "runs", &line);
        where_of(&e->ini, line, where, sizeof where);
        if (!list)
            return nnopt_error_set(err, NNOPT_STATUS_CONFIG, "%s: [%s] needs 'runs = A, B, ...'",
                                   where, section);
        char items[NNOPT_MAX_RUNS][96];
        int n = split_list(list, items, NNOPT_MAX_RUNS);
        for (int k = 0; k < n; k++) {
            int found = runs_named(e, items[k], c->runs + c->n_runs, NNOPT_MAX_RUNS - c->n_runs);
            if (found == 0)
                return nnopt_error_set(err, NNOPT_STATUS_CONFIG,
                                       "%s: [%s] names run '%s', which is not a run", where,
                                       section, items[k]);
            c->n_runs += found;
        }
        const char *baseline = entry_value(&e->ini, section, "baseline", &line);
        c->baseline = 0;
        if (baseline) {
            c->baseline = -1;
            for (int k = 0; k < c->n_runs; k++)
                if (strcmp(e->runs[c->runs[k]].name, baseline) == 0) c->baseline = k;
            if (c->baseline < 0) {
                where_of(&e->ini, line, where, sizeof where);
                return nnopt_error_set(err, NNOPT_STATUS_CONFIG,
                                       "%s: baseline '%s' is not one of the compared runs", where,
                                       baseline);
            }
        }
    }
    return NNOPT_OK;
}

/* Keys of [run NAME] sections that are neither run keys nor training keys. */
static nnopt_status check_run_keys(const nnopt_experiment *e, nnopt_error *err) {
    for (int k = 0; k < e->ini.n_entries; k++) {
        const nnopt_ini_entry *en = &e->ini.entries[k];
        if (!section_name(en->section, "run", NULL) || in_list(en->key, run_keys)) continue;
        int known = 0;
        for (int s = 0; s < nnopt_training_schema_count; s++)
            known |= !strcmp(nnopt_training_schema[s].name, en->key);
        if (known) continue;
        char where[1200];
        where_of(&e->ini, en->line, where, sizeof where);
        return nnopt_error_set(err, NNOPT_STATUS_CONFIG,
                               "%s: unknown key '%s' in [%s] (known: model, backend, techniques, "
                               "after, init_from, load_checkpoint, save_checkpoint, and the "
                               "[training] keys)",
                               where, en->key, en->section);
    }
    return NNOPT_OK;
}

nnopt_status nnopt_experiment_load(const char *path, const char *const *overrides, int n_overrides,
                                   nnopt_experiment *e, nnopt_error *err) {
    memset(e, 0, sizeof *e);
    nnopt_status st = nnopt_ini_read(path, &e->ini, err);
    for (int i = 0; st == NNOPT_OK && i < n_overrides; i++)
        st = nnopt_ini_override(&e->ini, overrides[i], err);
    if (st == NNOPT_OK) st = check_sections(&e->ini, err);
    if (st == NNOPT_OK)
        st = core_section(&e->ini, "experiment", nnopt_experiment_schema,
                          nnopt_experiment_schema_count, &e->experiment, err);
    if (st == NNOPT_OK)
        st = core_section(&e->ini, "plugins", nnopt_plugins_schema, nnopt_plugins_schema_count,
                          &e->plugins, err);
    if (st == NNOPT_OK)
        st = core_section(&e->ini, "data", nnopt_data_schema, nnopt_data_schema_count, &e->data,
                          err);
    if (st == NNOPT_OK)
        st = core_section(&e->ini, "training", nnopt_training_schema, nnopt_training_schema_count,
                          &e->training, err);
    if (st == NNOPT_OK) st = check_run_keys(e, err);
    if (st != NNOPT_OK) return st;

    nnopt_plugin_search_init(&e->search, nnopt_config_get(e->plugins, "path"));
    nnopt_error missing = {0};
    st = plugin_specs(e, &missing, err);
    if (st == NNOPT_OK && e->n_models == 0 && missing.status == NNOPT_OK)
        st = nnopt_error_set(err, NNOPT_STATUS_CONFIG, "%s: no [model] section: nothing to train",
                             path);
    if (st == NNOPT_OK) st = run_specs(e, &missing, err);
    if (st != NNOPT_OK) return st;
    if (missing.status != NNOPT_OK) {
        *err = missing;
        return missing.status;
    }
    st = run_links(e, err);
    if (st == NNOPT_OK) st = order_runs(e, err);
    if (st == NNOPT_OK) st = compare_specs(e, err);
    if (st != NNOPT_OK) return st;

    const char *name = nnopt_config_get(e->experiment, "name");
    if (name[0]) {
        snprintf(e->name, sizeof e->name, "%s", name);
    } else {
        char *copy = strdup(path);
        char *base = basename(copy);
        char *dot = strrchr(base, '.');
        if (dot && dot != base) *dot = '\0';
        snprintf(e->name, sizeof e->name, "%s", base);
        free(copy);
    }
    if (strchr(e->name, '/') || strcmp(e->name, "..") == 0 || strcmp(e->name, ".") == 0)
        return nnopt_error_set(err, NNOPT_STATUS_CONFIG,
                               "%s: experiment name '%s' must not be a path", path, e->name);
    snprintf(e->output_dir, sizeof e->output_dir, "%s/%s",
             nnopt_config_get(e->experiment, "output"), e->name);
    return NNOPT_OK;
}

static void free_specs(nnopt_plugin_spec *specs, int n) {
    for (int i = 0; i < n; i++) {
        nnopt_config_free(specs[i].cfg);
        nnopt_config_free(specs[i].fallback_cfg);
        nnopt_config_free(specs[i].op_cfg);
    }
}

void nnopt_experiment_free(nnopt_experiment *e) {
    nnopt_config_free(e->experiment);
    nnopt_config_free(e->plugins);
    nnopt_config_free(e->data);
    nnopt_config_free(e->training);
    free_specs(e->backends, e->n_backends);
    free_specs(e->models, e->n_models);
    free_specs(e->techniques, e->n_techniques);
    for (int i = 0; i < e->n_runs; i++) nnopt_config_free(e->runs[i].training);
    nnopt_plugin_search_free(&e->search);
    nnopt_ini_free(&e->ini);
    memset(e, 0, sizeof *e);
}

static void write_section(FILE *f, const char *name, const char *plugin, const nnopt_config *cfg) {
    fprintf(f, "[%s]\n", name);
    if (plugin) fprintf(f, "plugin = %s\n", plugin);
    if (cfg) nnopt_config_write(cfg, f);
    fputc('\n', f);
}

static void write_list(FILE *f, const char *key, const nnopt_experiment *e, const int *runs,
                       int n) {
    if (n == 0) return;
    fprintf(f, "%s = ", key);
    for (int i = 0; i < n; i++) fprintf(f, "%s%s", i ? ", " : "", e->runs[runs[i]].name);
    fputc('\n', f);
}

void nnopt_experiment_write_config(const nnopt_experiment *e, FILE *f) {
    fprintf(f, "; resolved configuration of %s (defaults filled in, sweeps expanded)\n",
            e->ini.path);
    write_section(f, "experiment", NULL, e->experiment);
    write_section(f, "plugins", NULL, e->plugins);
    write_section(f, "data", NULL, e->data);
    for (int i = 0; i < e->n_backends; i++) {
        const nnopt_plugin_spec *b = &e->backends[i];
        char section[96];
        snprintf(section, sizeof section, strcmp(b->name, "default") ? "backend %s" : "backend",
                 b->name);
        fprintf(f, "[%s]\nplugin = %s\n", section, b->plugin->desc->name);
        if (b->fallback) fprintf(f, "fallback = %s\n", b->fallback->desc->name);
        if (b->op_fallback)
            fprintf(f, "op_fallback = %s\n",
                    b->op_fallback == NNOPT_OP_FALLBACK_WARN ? "warn" : "allow");
        nnopt_config_write(b->cfg, f);
        fputc('\n', f);
    }
    for (int i = 0; i < e->n_models; i++)
        write_section(f, e->models[i].section, e->models[i].plugin->desc->name, e->models[i].cfg);
    for (int i = 0; i < e->n_techniques; i++) {
        const nnopt_plugin_spec *t = &e->techniques[i];
        fprintf(f, "[%s]\nplugin = %s\n", t->section, t->plugin->desc->name);
        if (t->epoch_from) fprintf(f, "epochs = %d-%d\n", t->epoch_from, t->epoch_to);
        nnopt_config_write(t->cfg, f);
        fputc('\n', f);
    }
    write_section(f, "training", NULL, e->training);
    for (int i = 0; i < e->n_runs; i++) {
        const nnopt_run_spec *r = &e->runs[i];
        fprintf(f, "[run %s]\nmodel = %s\nbackend = %s\n", r->name, e->models[r->model].name,
                e->backends[r->backend].name);
        if (r->n_techniques) {
            fprintf(f, "techniques = ");
            for (int k = 0; k < r->n_techniques; k++)
                fprintf(f, "%s%s", k ? ", " : "", e->techniques[r->techniques[k]].name);
            fputc('\n', f);
        }
        write_list(f, "after", e, r->deps, r->n_deps);
        if (r->init_from >= 0) fprintf(f, "init_from = %s\n", e->runs[r->init_from].name);
        if (r->load_checkpoint[0]) fprintf(f, "load_checkpoint = %s\n", r->load_checkpoint);
        if (r->save_checkpoint[0]) fprintf(f, "save_checkpoint = %s\n", r->save_checkpoint);
        nnopt_config_write(r->training, f);
        fputc('\n', f);
    }
    for (int i = 0; i < e->n_compares; i++) {
        const nnopt_compare_spec *c = &e->compares[i];
        fprintf(f, "[compare %s]\n", c->name);
        write_list(f, "runs", e, c->runs, c->n_runs);
        fprintf(f, "baseline = %s\n\n", e->runs[c->runs[c->baseline]].name);
    }
}
