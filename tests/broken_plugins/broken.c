/* Deliberately broken plugins for the loader tests; BROKEN_VARIANT selects how. */
#include "nnopt/nnopt.h"

#define NO_SYMBOL 1
#define ABI_MAJOR 2
#define ABI_MINOR 3
#define WRONG_KIND 4
#define INIT_FAILS 5
#define SMALL_VTABLE 6

static nnopt_status failing_init(const nnopt_host_api *host) {
    host->set_error("cannot open /dev/imaginary: no such device");
    return NNOPT_STATUS_INIT_FAILED;
}

static nnopt_status build(const nnopt_host_api *h, const nnopt_config *c, nnopt_graph *g,
                          nnopt_node *out) {
    (void)h, (void)c, (void)g, (void)out;
    return NNOPT_STATUS_UNSUPPORTED;
}

static const nnopt_model_vtable model_vtable = {sizeof(nnopt_model_vtable), build};
static const nnopt_backend_vtable backend_vtable = {.struct_size = 8};

static const nnopt_plugin_desc descriptor = {
    .abi_major = BROKEN_VARIANT == ABI_MAJOR ? NNOPT_ABI_MAJOR + 1 : NNOPT_ABI_MAJOR,
    .abi_minor = BROKEN_VARIANT == ABI_MINOR ? NNOPT_ABI_MINOR + 1 : NNOPT_ABI_MINOR,
    .struct_size = sizeof(nnopt_plugin_desc),
    .kind = BROKEN_VARIANT == WRONG_KIND || BROKEN_VARIANT == INIT_FAILS ? NNOPT_PLUGIN_MODEL
                                                                         : NNOPT_PLUGIN_BACKEND,
    .name = BROKEN_NAME,
    .version = "0.0.1",
    .description = "a deliberately broken plugin",
    .init = BROKEN_VARIANT == INIT_FAILS ? failing_init : NULL,
    .vtable = BROKEN_VARIANT == SMALL_VTABLE                             ? (const void *)&backend_vtable
              : BROKEN_VARIANT == WRONG_KIND || BROKEN_VARIANT == INIT_FAILS ? (const void *)&model_vtable
                                                                          : (const void *)&backend_vtable,
};

#if BROKEN_VARIANT == NO_SYMBOL
NNOPT_PLUGIN_EXPORT const nnopt_plugin_desc *something_else(void) { return &descriptor; }
#else
NNOPT_PLUGIN_EXPORT const nnopt_plugin_desc *nnopt_plugin_descriptor(void) { return &descriptor; }
#endif
