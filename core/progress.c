#include "clock.h"
#include "progress.h"

#include <stdio.h>
#include <unistd.h>

void nnopt_progress_init(nnopt_progress *p, const char *label, int mode) {
    p->label = label;
    p->bar = mode < 0 ? isatty(STDERR_FILENO) : mode;
}

void nnopt_progress_begin(nnopt_progress *p, int epoch, int epochs, int64_t total) {
    p->epoch = epoch;
    p->epochs = epochs;
    p->total = total;
    p->last_drawn = -1;
    p->started = nnopt_now_seconds();
}

void nnopt_progress_update(nnopt_progress *p, int64_t done, double loss) {
    if (!p->bar || p->total <= 0) return;
    /* Redraw about 50 times an epoch: drawing is not free. */
    int64_t step = p->total / 50 > 0 ? p->total / 50 : 1;
    if (done != p->total && done - p->last_drawn < step) return;
    p->last_drawn = done;
    const int width = 30;
    int filled = (int)(width * done / p->total);
    char bar[31];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    double elapsed = nnopt_now_seconds() - p->started;
    fprintf(stderr, "\r%s epoch %d/%d [%s] %lld/%lld loss %.4f %.1fs", p->label, p->epoch,
            p->epochs, bar, (long long)done, (long long)p->total, loss, elapsed);
    fflush(stderr);
}

void nnopt_progress_end(nnopt_progress *p, double train_loss, double accuracy, double train_s,
                        double eval_s) {
    if (p->bar) fputs("\r\033[K", stderr);
    fprintf(stderr, "%s epoch %d/%d: loss %.4f, test accuracy %.4f, train %.2fs, eval %.2fs\n",
            p->label, p->epoch, p->epochs, train_loss, accuracy, train_s, eval_s);
}

void nnopt_progress_abort(nnopt_progress *p) {
    if (p->bar) fputs("\n", stderr);
}
