#include "experiment.h"

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

/* Fills cfg from every entry of `section` except those in `skip`. */
static nnopt_status fill_section(const nnopt_ini *ini, const char *section, const char *skip,
                                 nnopt_config *cfg, nnopt_error *err) {
    for (int i = 0; i < ini->n_entries; i++) {
        const nnopt_ini_entry *e = &ini->entries[i];
        if (strcmp(e->section, section) != 0 || (skip && strcmp(e->key, skip) == 0)) continue;
        char where[1200];
        nnopt_ini_where(ini, e->line, where, sizeof where);
        nnopt_status st = nnopt_config_set(cfg, e->key, e->value, where, err);
        if (st != NNOPT_OK) return st;
    }
    char where[1200];
    nnopt_ini_where(ini, section_line(ini, section), where, sizeof where);
    return nnopt_config_finish(cfg, where, err);
}

static nnopt_status core_section(const nnopt_ini *ini, const char *section,
                                 const nnopt_param_spec *schema, int n, nnopt_config **out,
                                 nnopt_error *err) {
    char owner[80];
    snprintf(owner, sizeof owner, "[%s]", section);
    *out = nnopt_config_create(schema, n, owner);
    if (!*out) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    return fill_section(ini, section, NULL, *out, err);
}

static const char *entry_value(const nnopt_ini *ini, const char *section, const char *key,
                               int *line) {
    for (int i = 0; i < ini->n_entries; i++)
        if (strcmp(ini->entries[i].section, section) == 0 && strcmp(ini->entries[i].key, key) == 0) {
            if (line) *line = ini->entries[i].line;
            return ini->entries[i].value;
        }
    return NULL;
}

/* "model" or "model NAME" -> NAME (or "model"); NULL for other sections. */
static const char *model_name(const char *section) {
    if (strcmp(section, "model") == 0) return "model";
    if (strncmp(section, "model ", 6) == 0 && section[6]) return section + 6;
    return NULL;
}

static nnopt_status check_sections(const nnopt_ini *ini, nnopt_error *err) {
    static const char *const known[] = {"experiment", "plugins", "data", "backend", "training"};
    for (int i = 0; i < ini->n_sections; i++) {
        const char *s = ini->sections[i].name;
        int ok = model_name(s) != NULL;
        for (size_t k = 0; k < sizeof known / sizeof *known; k++) ok |= strcmp(s, known[k]) == 0;
        if (ok) continue;
        char where[1200];
        nnopt_ini_where(ini, ini->sections[i].line, where, sizeof where);
        return nnopt_error_set(err, NNOPT_STATUS_CONFIG,
                               "%s: unknown section [%s] (known: experiment, plugins, data, "
                               "backend, model [NAME], training)",
                               where, s);
    }
    return NNOPT_OK;
}

/* Loads the plugin named by `section`'s plugin key and validates the rest of
 * the section against its schema. Plugin errors are appended to `missing`. */
static nnopt_status plugin_section(nnopt_experiment *e, const char *section, nnopt_plugin_kind kind,
                                   const char *default_name, const nnopt_plugin **plugin,
                                   nnopt_config **cfg, nnopt_error *missing, nnopt_error *err) {
    int line = section_line(&e->ini, section);
    const char *name = entry_value(&e->ini, section, "plugin", &line);
    char where[1200];
    nnopt_ini_where(&e->ini, line, where, sizeof where);
    if (!name && !default_name)
        return nnopt_error_set(err, NNOPT_STATUS_CONFIG, "%s: [%s] needs 'plugin = NAME'", where,
                               section);
    if (!name) name = default_name;
    nnopt_error one = {0};
    if (nnopt_plugin_load(&e->search, kind, name, plugin, &one) != NNOPT_OK) {
        nnopt_error located = {0};
        nnopt_error_set(&located, one.status, "%s: %s", where, one.message);
        error_append(missing, &located);
        return NNOPT_OK; /* keep going: report every missing plugin at once */
    }
    const nnopt_plugin_desc *d = (*plugin)->desc;
    char owner[128];
    snprintf(owner, sizeof owner, "[%s] (%s plugin '%s')", section, nnopt_plugin_kind_name(kind),
             d->name);
    *cfg = nnopt_config_create(d->params, (int)d->n_params, owner);
    if (!*cfg) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    return fill_section(&e->ini, section, "plugin", *cfg, err);
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
        st = core_section(&e->ini, "data", nnopt_data_schema, nnopt_data_schema_count, &e->data, err);
    if (st == NNOPT_OK)
        st = core_section(&e->ini, "training", nnopt_training_schema, nnopt_training_schema_count,
                          &e->training, err);
    if (st != NNOPT_OK) return st;

    nnopt_plugin_search_init(&e->search, nnopt_config_get(e->plugins, "path"));
    nnopt_error missing = {0};
    st = plugin_section(e, "backend", NNOPT_PLUGIN_BACKEND, "cpu", &e->backend, &e->backend_cfg,
                        &missing, err);
    for (int i = 0; st == NNOPT_OK && i < e->ini.n_sections; i++) {
        const char *section = e->ini.sections[i].name, *name = model_name(section);
        if (!name) continue;
        if (e->n_models == NNOPT_MAX_MODELS)
            return nnopt_error_set(err, NNOPT_STATUS_CONFIG, "%s: more than %d models", path,
                                   NNOPT_MAX_MODELS);
        nnopt_model_spec *m = &e->models[e->n_models++];
        snprintf(m->name, sizeof m->name, "%s", name);
        snprintf(m->section, sizeof m->section, "%s", section);
        st = plugin_section(e, section, NNOPT_PLUGIN_MODEL, NULL, &m->plugin, &m->cfg, &missing, err);
    }
    if (st != NNOPT_OK) return st;
    if (missing.status != NNOPT_OK) {
        *err = missing;
        return missing.status;
    }
    if (e->n_models == 0)
        return nnopt_error_set(err, NNOPT_STATUS_CONFIG,
                               "%s: no [model] section: nothing to train", path);

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
        return nnopt_error_set(err, NNOPT_STATUS_CONFIG, "%s: experiment name '%s' must not be a path",
                               path, e->name);
    snprintf(e->output_dir, sizeof e->output_dir, "%s/%s", nnopt_config_get(e->experiment, "output"),
             e->name);
    return NNOPT_OK;
}

void nnopt_experiment_free(nnopt_experiment *e) {
    nnopt_config_free(e->experiment);
    nnopt_config_free(e->plugins);
    nnopt_config_free(e->data);
    nnopt_config_free(e->training);
    nnopt_config_free(e->backend_cfg);
    for (int i = 0; i < e->n_models; i++) nnopt_config_free(e->models[i].cfg);
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

void nnopt_experiment_write_config(const nnopt_experiment *e, FILE *f) {
    fprintf(f, "; resolved configuration of %s (defaults filled in)\n", e->ini.path);
    write_section(f, "experiment", NULL, e->experiment);
    write_section(f, "plugins", NULL, e->plugins);
    write_section(f, "data", NULL, e->data);
    write_section(f, "backend", e->backend->desc->name, e->backend_cfg);
    for (int i = 0; i < e->n_models; i++)
        write_section(f, e->models[i].section, e->models[i].plugin->desc->name, e->models[i].cfg);
    write_section(f, "training", NULL, e->training);
}
