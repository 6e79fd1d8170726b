/* A backend that cannot run on this machine (like a GPU backend without a
 * GPU): create fails with NNOPT_STATUS_DEVICE and a reason. */
#include "nnopt/nnopt.h"

static nnopt_status create(const nnopt_host_api *host, const nnopt_config *cfg, void **ctx) {
    (void)cfg, (void)ctx;
    host->set_error("no device: this test backend never has one");
    return NNOPT_STATUS_DEVICE;
}

static const nnopt_backend_vtable vtable = {.struct_size = sizeof(nnopt_backend_vtable), .create = create};

static const nnopt_plugin_desc descriptor = {
    .abi_major = NNOPT_ABI_MAJOR,
    .abi_minor = NNOPT_ABI_MINOR,
    .struct_size = sizeof(nnopt_plugin_desc),
    .kind = NNOPT_PLUGIN_BACKEND,
    .name = "nodevice",
    .version = "0.0.1",
    .description = "a backend whose device is never present",
    .vtable = &vtable,
};

NNOPT_PLUGIN_EXPORT const nnopt_plugin_desc *nnopt_plugin_descriptor(void) { return &descriptor; }
