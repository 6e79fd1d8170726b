/* nnopt plugins [NAME]: what plugins are found, with their parameters. */
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "commands.h"
#include "config.h"
#include "plugin_loader.h"

typedef struct listing {
    const char *only; /* a name, or NULL for all */
    int shown;
} listing;

static void print_params(const nnopt_plugin_desc *d) {
    if (d->n_params == 0) {
        printf("    (no parameters)\n");
        return;
    }
    for (uint32_t i = 0; i < d->n_params; i++) {
        const nnopt_param_spec *p = &d->params[i];
        char type[128];
        if (p->type == NNOPT_PARAM_ENUM)
            snprintf(type, sizeof type, "%s", p->choices);
        else
            snprintf(type, sizeof type, "%s", nnopt_param_type_name(p->type));
        printf("    %-14s %-22s default %-12s %s\n", p->name, type,
               p->default_value ? (p->default_value[0] ? p->default_value : "\"\"") : "(required)",
               p->help);
    }
}

/* A backend's own account of what it picked on this machine. */
static void print_backend_detail(const nnopt_plugin *p) {
    const nnopt_plugin_desc *d = p->desc;
    nnopt_config *cfg = nnopt_config_create(d->params, (int)d->n_params, d->name);
    nnopt_error err = {0};
    nnopt_backend *b = NULL;
    if (cfg && nnopt_config_finish(cfg, "defaults", &err) == NNOPT_OK &&
        nnopt_backend_open(p, cfg, &b, &err) == NNOPT_OK) {
        printf("  on this machine: %s\n", b->description);
        nnopt_backend_close(b);
    } else {
        printf("  on this machine: unusable: %s\n", err.message);
    }
    nnopt_config_free(cfg);
}

static void show(const nnopt_plugin *p, void *user) {
    listing *l = user;
    const nnopt_plugin_desc *d = p->desc;
    if (l->only && strcmp(l->only, d->name) != 0) return;
    l->shown++;
    printf("%-9s %-14s %-8s ABI %u.%u  %s\n", nnopt_plugin_kind_name(d->kind), d->name, d->version,
           d->abi_major, d->abi_minor, d->description ? d->description : "");
    if (l->only) {
        printf("  file: %s\n", p->path);
        if (d->kind == NNOPT_PLUGIN_BACKEND) print_backend_detail(p);
    }
    print_params(d);
}

static void report_broken(const nnopt_error *e, void *user) {
    (void)user;
    fprintf(stderr, "nnopt: warning: %s\n", e->message);
}

int nnopt_cmd_plugins(int argc, char **argv) {
    listing l = {NULL, 0};
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--path") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (argv[i][0] != '-' && !l.only)
            l.only = argv[i];
        else {
            fprintf(stderr, "usage: nnopt plugins [NAME] [--path DIR]\n");
            return 2;
        }
    }
    nnopt_plugin_search s;
    nnopt_plugin_search_init(&s, path);
    nnopt_plugin_scan(&s, show, report_broken, &l);
    int rc = 0;
    if (l.only && !l.shown) {
        char where[2048];
        nnopt_plugin_search_describe(&s, where, sizeof where);
        fprintf(stderr, "nnopt: error: no plugin named '%s' (looked in: %s)\n", l.only, where);
        rc = 1;
    } else if (!l.shown) {
        char where[2048];
        nnopt_plugin_search_describe(&s, where, sizeof where);
        printf("no plugins found (looked in: %s)\n", where);
    }
    nnopt_plugin_search_free(&s);
    return rc;
}
