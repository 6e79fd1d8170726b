/* A small learnable image-classification dataset written as IDX files:
 * class k is a bright 7x7 square at one of ten fixed places, plus noise. */
#ifndef NNOPT_IDX_FIXTURE_H
#define NNOPT_IDX_FIXTURE_H

/* Writes train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-... (raw IDX)
 * into dir. Returns 0 on success. */
int idx_fixture_write(const char *dir, int n_train, int n_test, unsigned seed);

/* A fresh temporary folder (mkdtemp) and its removal. */
int fixture_tmpdir(char *buf, unsigned long size, const char *tag);
void fixture_rmdir(const char *dir);

#endif
