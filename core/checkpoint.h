/* Checkpoints: every parameter and buffer of a network in the safetensors
 * format (docs/checkpoints.md), named by its graph node name, so that other
 * tools (PyTorch, the safetensors library) read them as they are. */
#ifndef NNOPT_CORE_CHECKPOINT_H
#define NNOPT_CORE_CHECKPOINT_H

#include "network.h"

/* Headers larger than this are refused as hostile (safetensors' own limit). */
#define NNOPT_CHECKPOINT_MAX_HEADER (100u * 1000u * 1000u)

/* Writes every parameter and buffer of net to path atomically: into
 * path.tmp.<pid>, fsync, rename over path, fsync of the folder. A crash at
 * any moment leaves path as it was or the complete new file.
 * metadata_json: NULL or a JSON object of string values (e.g.
 * {"model":"lenet5"}) merged into "__metadata__", which always holds
 * "format": "nnopt" and "nnopt_version". */
nnopt_status nnopt_checkpoint_save(nnopt_network *net, const char *path, const char *metadata_json,
                                   nnopt_error *err);

/* Replaces every parameter and buffer of net with the checkpoint's values.
 * The whole file is validated (header, dtypes, shapes, offsets) and matched
 * against the network (same names and shapes, no missing or extra tensors)
 * before anything is written: on error net is unchanged. F32 and F64 tensors
 * load into networks of either dtype. */
nnopt_status nnopt_checkpoint_load(nnopt_network *net, const char *path, nnopt_error *err);

#endif
