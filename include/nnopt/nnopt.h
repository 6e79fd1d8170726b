/* The nnopt plugin SDK: include this one header to write a plugin. */
#ifndef NNOPT_NNOPT_H
#define NNOPT_NNOPT_H
#include "nnopt/backend.h"
#include "nnopt/host.h"
#include "nnopt/model.h"
#include "nnopt/ops.h"
#include "nnopt/params.h"
#include "nnopt/plugin.h"
#include "nnopt/program.h"
#include "nnopt/technique.h"
#include "nnopt/types.h"
#endif
