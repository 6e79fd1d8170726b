/* nnopt: run neural-network optimisation experiments described by INI files. */
#include <stdio.h>
#include <string.h>

#include "commands.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: nnopt run FILE.ini [--set section.key=value]...   train and report\n"
            "       nnopt check FILE.ini [--set section.key=value]... validate without training\n"
            "       nnopt plugins [NAME] [--path DIR]                 list plugins and parameters\n"
            "       nnopt --version\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0) return nnopt_cmd_run(argc - 2, argv + 2, 0);
    if (strcmp(cmd, "check") == 0) return nnopt_cmd_run(argc - 2, argv + 2, 1);
    if (strcmp(cmd, "plugins") == 0) return nnopt_cmd_plugins(argc - 2, argv + 2);
    if (strcmp(cmd, "--version") == 0) {
        printf("nnopt %s\n", NNOPT_VERSION);
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "nnopt: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
