#include "report_svg.h"

#include <math.h>
#include <string.h>

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
#define PALETTE_SIZE (sizeof palette / sizeof *palette)

typedef struct panel {
    double x0, y0, w, h;           /* plot area in pixels */
    double xmin, xmax, ymin, ymax; /* data range */
} panel;

static double px(const panel *p, double x) {
    return p->x0 + (x - p->xmin) / (p->xmax - p->xmin) * p->w;
}
static double py(const panel *p, double y) {
    return p->y0 + p->h - (y - p->ymin) / (p->ymax - p->ymin) * p->h;
}

static void text_escaped(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else
            fputc(*s, f);
    }
}

/* A "nice" tick step for a range: 1, 2 or 5 times a power of ten. */
static double tick_step(double range) {
    double raw = range / 5, power = pow(10, floor(log10(raw))), m = raw / power;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * power;
}

static void axes(FILE *f, const panel *p, const char *xlabel, const char *ylabel, int integer_x) {
    fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='none' stroke='#444'/>\n",
            p->x0, p->y0, p->w, p->h);
    double step = tick_step(p->xmax - p->xmin);
    if (integer_x && step < 1) step = 1; /* epochs */
    for (double t = ceil(p->xmin / step) * step; t <= p->xmax + 1e-9; t += step)
        fprintf(f,
                "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>"
                "<text x='%.1f' y='%.1f' font-size='11' text-anchor='middle'>%g</text>\n",
                px(p, t), p->y0, px(p, t), p->y0 + p->h, px(p, t), p->y0 + p->h + 14, t);
    step = tick_step(p->ymax - p->ymin);
    for (double t = ceil(p->ymin / step) * step; t <= p->ymax + 1e-9; t += step)
        fprintf(f,
                "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>"
                "<text x='%.1f' y='%.1f' font-size='11' text-anchor='end'>%g</text>\n",
                p->x0, py(p, t), p->x0 + p->w, py(p, t), p->x0 - 4, py(p, t) + 4, t);
    fprintf(f, "<text x='%.1f' y='%.1f' font-size='12' text-anchor='middle'>%s</text>\n",
            p->x0 + p->w / 2, p->y0 + p->h + 32, xlabel);
    fprintf(f,
            "<text x='%.1f' y='%.1f' font-size='12' text-anchor='middle' "
            "transform='rotate(-90 %.1f %.1f)'>%s</text>\n",
            p->x0 - 42, p->y0 + p->h / 2, p->x0 - 42, p->y0 + p->h / 2, ylabel);
}

static void header(FILE *f, int width, int height, const char *title) {
    fprintf(f,
            "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' "
            "font-family='sans-serif'>\n<rect width='100%%' height='100%%' fill='white'/>\n"
            "<text x='%d' y='22' font-size='15' text-anchor='middle'>",
            width, height, width / 2);
    text_escaped(f, title);
    fputs("</text>\n", f);
}

static void legend(FILE *f, double x, double y, const nnopt_run_result *runs, const int *which,
                   int n) {
    for (int i = 0; i < n; i++) {
        fprintf(f,
                "<rect x='%.1f' y='%.1f' width='12' height='12' fill='%s'/><text x='%.1f' y='%.1f' "
                "font-size='12'>",
                x, y + 18 * i, palette[i % PALETTE_SIZE], x + 18, y + 18 * i + 11);
        text_escaped(f, runs[which ? which[i] : i].run);
        fputs("</text>\n", f);
    }
}

/* Accuracy range of the plotted points, padded and clamped to [0, 1]. */
static void accuracy_range(panel *p, double lo, double hi) {
    if (!(hi > lo)) lo = hi - 0.05;
    double pad = (hi - lo) * 0.1 + 0.005;
    p->ymin = fmax(0, lo - pad);
    p->ymax = fmin(1, hi + pad);
    if (p->ymax <= p->ymin) p->ymin = p->ymax - 0.1;
}

void nnopt_svg_accuracy_curves(FILE *f, const char *title, const nnopt_run_result *runs,
                               const int *which, int n) {
    panel p = {70, 40, 520, 300, 1, 2, 0, 1};
    double lo = 1, hi = 0;
    int max_epochs = 1;
    for (int i = 0; i < n; i++) {
        const nnopt_run_result *r = &runs[which[i]];
        if (r->n_epochs > max_epochs) max_epochs = r->n_epochs;
        for (int k = 0; k < r->n_epochs; k++) {
            lo = fmin(lo, r->epochs[k].test_accuracy);
            hi = fmax(hi, r->epochs[k].test_accuracy);
        }
    }
    p.xmax = max_epochs > 1 ? max_epochs : 2;
    accuracy_range(&p, lo, hi);
    header(f, 780, 400, title);
    axes(f, &p, "epoch", "test accuracy", 1);
    for (int i = 0; i < n; i++) {
        const nnopt_run_result *r = &runs[which[i]];
        const char *color = palette[i % PALETTE_SIZE];
        fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='", color);
        for (int k = 0; k < r->n_epochs; k++)
            fprintf(f, "%.1f,%.1f ", px(&p, r->epochs[k].epoch),
                    py(&p, r->epochs[k].test_accuracy));
        fputs("'/>\n", f);
        for (int k = 0; k < r->n_epochs; k++)
            fprintf(f, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>\n",
                    px(&p, r->epochs[k].epoch), py(&p, r->epochs[k].test_accuracy), color);
    }
    legend(f, 610, 50, runs, which, n);
    fputs("</svg>\n", f);
}

static void scatter(FILE *f, const panel *p, const nnopt_run_result *runs, int n, int inference) {
    for (int i = 0; i < n; i++) {
        double t = inference ? runs[i].eval_seconds : runs[i].train_seconds;
        fprintf(f, "<circle cx='%.1f' cy='%.1f' r='5' fill='%s'/>\n", px(p, t),
                py(p, runs[i].test_accuracy), palette[i % PALETTE_SIZE]);
    }
}

void nnopt_svg_accuracy_vs_time(FILE *f, const char *title, const nnopt_run_result *runs, int n) {
    panel train = {70, 40, 330, 300, 0, 1e-3, 0, 1}, infer = {480, 40, 330, 300, 0, 1e-3, 0, 1};
    double lo = 1, hi = 0;
    for (int i = 0; i < n; i++) {
        train.xmax = fmax(train.xmax, runs[i].train_seconds * 1.1);
        infer.xmax = fmax(infer.xmax, runs[i].eval_seconds * 1.1);
        lo = fmin(lo, runs[i].test_accuracy);
        hi = fmax(hi, runs[i].test_accuracy);
    }
    accuracy_range(&train, lo, hi);
    accuracy_range(&infer, lo, hi);
    header(f, 1000, 400, title);
    axes(f, &train, "training time (s)", "test accuracy", 0);
    axes(f, &infer, "inference time (s)", "test accuracy", 0);
    scatter(f, &train, runs, n, 0);
    scatter(f, &infer, runs, n, 1);
    legend(f, 830, 50, runs, NULL, n);
    fputs("</svg>\n", f);
}
