/* Training progress on stderr: a redrawn bar on a terminal, one plain line
 * per epoch otherwise. */
#ifndef NNOPT_CORE_PROGRESS_H
#define NNOPT_CORE_PROGRESS_H

#include <stdint.h>

typedef struct nnopt_progress {
    const char *label;
    int bar; /* redraw a bar (terminal) */
    int epoch, epochs;
    int64_t total, last_drawn;
    double started;
} nnopt_progress;

/* mode: 1 = bar, 0 = plain lines, -1 = bar when stderr is a terminal. */
void nnopt_progress_init(nnopt_progress *p, const char *label, int mode);
void nnopt_progress_begin(nnopt_progress *p, int epoch, int epochs, int64_t total);
void nnopt_progress_update(nnopt_progress *p, int64_t done, double loss);
void nnopt_progress_end(nnopt_progress *p, double train_loss, double accuracy, double train_s,
                        double eval_s);
void nnopt_progress_abort(nnopt_progress *p);

#endif
