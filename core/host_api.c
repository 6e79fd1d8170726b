/* The host API table handed to plugins. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "fsutil.h"
#include "graph.h"
#include "log.h"
#include "pipeline.h"
#include "plugin_loader.h"

static void host_log(nnopt_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    nnopt_logv(level, fmt, ap);
    va_end(ap);
}

static void host_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    nnopt_plugin_error_setv(fmt, ap);
    va_end(ap);
}

static int host_config_int_list(const nnopt_config *cfg, const char *name, int64_t *out, int max) {
    return nnopt_config_get_int_list(cfg, name, out, max);
}

static int host_act_from_name(const char *name) {
    for (int k = 0; k < NNOPT_ACT_KIND_COUNT; k++)
        if (strcmp(nnopt_act_kind_name((nnopt_act_kind)k), name) == 0) return k;
    if (strcmp(name, "gelu_tanh") == 0) return NNOPT_ACT_GELU_TANH;
    return -1;
}

static nnopt_status host_write_file_atomic(const char *path, const void *data, size_t size) {
    nnopt_error err = {0};
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    nnopt_status st = NNOPT_OK;
    if (slash && slash != dir) {
        *slash = '\0';
        st = nnopt_mkdirs(dir, &err);
    }
    if (st == NNOPT_OK) st = nnopt_write_atomic_parts(path, &data, &size, 1, &err);
    if (st != NNOPT_OK) host_set_error("%s", err.message);
    return st;
}

static const nnopt_host_api host_api = {
    .struct_size = sizeof(nnopt_host_api),
    .abi_major = NNOPT_ABI_MAJOR,
    .abi_minor = NNOPT_ABI_MINOR,
    .log = host_log,
    .set_error = host_set_error,
    .config_int = nnopt_config_get_int,
    .config_float = nnopt_config_get_float,
    .config_bool = nnopt_config_get_bool,
    .config_string = nnopt_config_get,
    .config_int_list = host_config_int_list,
    .act_from_name = host_act_from_name,
    .graph_input = nnopt_graph_input,
    .graph_num_classes = nnopt_graph_num_classes,
    .graph_param = nnopt_graph_param,
    .graph_conv2d = nnopt_graph_conv2d,
    .graph_pool2d = nnopt_graph_pool2d,
    .graph_dense = nnopt_graph_dense,
    .graph_act = nnopt_graph_act,
    .graph_flatten = nnopt_graph_flatten,
    .graph_add = nnopt_graph_add,
    .graph_shape = nnopt_graph_shape,
    .graph_batchnorm = nnopt_graph_batchnorm,
    .graph_dropout = nnopt_graph_dropout,
    .graph_global_avg_pool = nnopt_graph_global_avg_pool,
    .graph_buffer = nnopt_graph_buffer,
    .graph_node_count = nnopt_graph_node_count,
    .graph_node_act = nnopt_graph_node_act,
    .graph_set_act = nnopt_graph_set_act,
    .graph_dtype = nnopt_graph_dtype,
    .graph_set_dtype = nnopt_graph_set_dtype,
    .run_name = nnopt_run_name,
    .run_graph = nnopt_run_graph,
    .run_find = nnopt_run_find,
    .run_predict = nnopt_run_predict,
    .run_train_size = nnopt_run_train_size,
    .run_set_dtype = nnopt_run_set_dtype,
    .batch_size = nnopt_batch_size,
    .batch_classes = nnopt_batch_classes,
    .batch_indices = nnopt_batch_indices,
    .batch_set_label_weight = nnopt_batch_set_label_weight,
    .batch_add_soft_targets = nnopt_batch_add_soft_targets,
    .run_set_kernels = nnopt_run_set_kernels,
    .run_kernel_stats = nnopt_run_kernel_stats,
    .write_file_atomic = host_write_file_atomic,
    .graph_node_info = nnopt_graph_node_info,
    .run_calibrate = nnopt_run_calibrate,
    .run_read_state = nnopt_run_read_state,
    .run_set_state = nnopt_run_set_state,
    .run_drop_state = nnopt_run_drop_state,
    .run_set_op = nnopt_run_set_op,
    .run_fold_node = nnopt_run_fold_node,
};

const nnopt_host_api *nnopt_host_api_get(void) {
    return &host_api;
}
