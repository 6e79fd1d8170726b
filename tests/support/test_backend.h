/* Test support: open a backend plugin through the core's registry (as users
 * do) and move host arrays of doubles in and out of its tensors. */
#ifndef NNOPT_TEST_BACKEND_H
#define NNOPT_TEST_BACKEND_H

#include "nnopt/nnopt.h"

typedef struct test_backend {
    const nnopt_backend_vtable *vt;
    const nnopt_host_api *host;
    void *ctx;
    const char *name;
} test_backend;

struct nnopt_error; /* core/error.h */

/* Sets the "key=value" settings (NULL-terminated; NULL: none) in cfg and
 * finishes it; stops at the first failure, which err describes. */
nnopt_status test_config_apply_settings(nnopt_config *cfg, const char *const *settings,
                                        struct nnopt_error *err);

/* Opens backend `name` (e.g. "cpu", "blis") from the build's plugin folder.
 * settings: NULL-terminated "key=value" strings of the backend's schema.
 * Returns 0 on success; otherwise prints why and returns -1. */
int test_backend_open(const char *name, const char *const *settings, test_backend *out);
void test_backend_close(test_backend *b);

/* A tensor of dtype and shape, allocated on b, filled from values (converted
 * from double; NULL: zeros). Free with test_tensor_free. */
nnopt_tensor *test_tensor_new(test_backend *b, nnopt_dtype dtype, int ndim, const int64_t *shape,
                              const double *values);
/* Reads all elements back as doubles (values has numel entries). */
void test_tensor_read(test_backend *b, const nnopt_tensor *t, double *values);
void test_tensor_write(test_backend *b, nnopt_tensor *t, const double *values);
void test_tensor_free(test_backend *b, nnopt_tensor *t);

/* Runs op, returns the status (and prints the plugin's error on failure). */
nnopt_status test_run(test_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                      nnopt_tensor *const *out, int n_out);

#endif
