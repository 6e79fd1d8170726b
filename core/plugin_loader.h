/* Finding, loading and validating plugins. Plugins are never unloaded while
 * the process runs (their code may still be referenced by live objects). */
#ifndef NNOPT_CORE_PLUGIN_LOADER_H
#define NNOPT_CORE_PLUGIN_LOADER_H

#include "error.h"
#include "nnopt/plugin.h"

#include <stddef.h>

/* The bytes a struct needs to hold `field`: a plugin's table covers an entry
 * when its struct_size is at least this (entries appended in later minors). */
#define NNOPT_END_OF(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))

typedef struct nnopt_plugin {
    char *path;
    const nnopt_plugin_desc *desc;
} nnopt_plugin;

#define NNOPT_MAX_SEARCH_DIRS 16

/* Where plugins are looked for, in order: the INI's [plugins] path, the
 * NNOPT_PLUGIN_PATH environment variable (both colon-separated), then the
 * build folder and the install folder. */
typedef struct nnopt_plugin_search {
    char *dirs[NNOPT_MAX_SEARCH_DIRS];
    int n_dirs;
} nnopt_plugin_search;

void nnopt_plugin_search_init(nnopt_plugin_search *s, const char *ini_path_list);
void nnopt_plugin_search_free(nnopt_plugin_search *s);
/* "dir1, dir2, ..." for messages. */
void nnopt_plugin_search_describe(const nnopt_plugin_search *s, char *buf, size_t size);

/* Loads the plugin of `kind` called `name` (file nnopt_<kind>_<name>.so in
 * the search folders), or the file `name` itself when it contains a '/'.
 * Checks the descriptor (ABI, size, kind, name) and runs its init once.
 * The returned plugin lives until process exit. */
nnopt_status nnopt_plugin_load(const nnopt_plugin_search *s, nnopt_plugin_kind kind,
                               const char *name, const nnopt_plugin **out, nnopt_error *err);

/* Loads a plugin file without knowing its kind (for listing). */
nnopt_status nnopt_plugin_load_file(const char *path, const nnopt_plugin **out, nnopt_error *err);

/* Calls fn for every loadable nnopt_*.so in the search folders (first folder
 * wins for a repeated file name); broken files are reported through
 * on_error. Returns the number of plugins found. */
int nnopt_plugin_scan(const nnopt_plugin_search *s, void (*fn)(const nnopt_plugin *p, void *user),
                      void (*on_error)(const nnopt_error *e, void *user), void *user);

/* The host API table handed to every plugin. */
const nnopt_host_api *nnopt_host_api_get(void);

#endif
