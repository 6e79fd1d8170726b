/* Finite-difference gradient checks of every differentiable op (float64).
 * Usage: test_gradcheck [BACKEND]  (default "cpu"). The checks live in
 * gradcheck_support.c so that other backends' tests can run them too. */
#include "gradcheck_support.h"

int main(int argc, char **argv) {
    return gradcheck_all(argc > 1 ? argv[1] : "cpu");
}
