#include "idx_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_be32(FILE *f, unsigned v) {
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    fwrite(b, 1, 4, f);
}

static int write_split(const char *dir, const char *prefix, int n, unsigned *state) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, prefix);
    FILE *images = fopen(path, "wb");
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, prefix);
    FILE *labels = fopen(path, "wb");
    if (!images || !labels) {
        if (images) fclose(images);
        if (labels) fclose(labels);
        return -1;
    }
    put_be32(images, 0x803);
    put_be32(images, (unsigned)n);
    put_be32(images, 28);
    put_be32(images, 28);
    put_be32(labels, 0x801);
    put_be32(labels, (unsigned)n);
    unsigned char img[28 * 28];
    for (int i = 0; i < n; i++) {
        int k = i % 10;
        int row = 2 + (k / 5) * 12, col = 1 + (k % 5) * 5;
        for (int p = 0; p < 28 * 28; p++) {
            *state = *state * 1664525u + 1013904223u;
            img[p] = (unsigned char)((*state >> 24) % 60); /* noise */
        }
        for (int r = 0; r < 7; r++)
            for (int c = 0; c < 5; c++) img[(row + r) * 28 + col + c] = 255;
        fwrite(img, 1, sizeof img, images);
        unsigned char label = (unsigned char)k;
        fwrite(&label, 1, 1, labels);
    }
    fclose(images);
    fclose(labels);
    return 0;
}

int idx_fixture_write(const char *dir, int n_train, int n_test, unsigned seed) {
    unsigned state = seed;
    if (write_split(dir, "train", n_train, &state) != 0) return -1;
    return write_split(dir, "t10k", n_test, &state);
}

int fixture_tmpdir(char *buf, unsigned long size, const char *tag) {
    snprintf(buf, size, "/tmp/nnopt_%s_XXXXXX", tag);
    return mkdtemp(buf) ? 0 : -1;
}

void fixture_rmdir(const char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}
