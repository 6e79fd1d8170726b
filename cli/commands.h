#ifndef NNOPT_CLI_COMMANDS_H
#define NNOPT_CLI_COMMANDS_H

/* Each returns the process exit status. */
int nnopt_cmd_run(int argc, char **argv, int check_only);
int nnopt_cmd_plugins(int argc, char **argv);

#endif
