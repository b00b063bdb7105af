/* The engine's subcommands. Each takes the arguments after its name and returns the exit status:
 * 0 success, 1 the work found problems or failed, 2 a usage error. */
#ifndef SDTUNE_ENGINE_CLI_H
#define SDTUNE_ENGINE_CLI_H

#include <stdio.h>

int cli_validate(int argc, char **argv);
int cli_schema(int argc, char **argv);
int cli_devices(int argc, char **argv);
int cli_inspect(int argc, char **argv);
int cli_init_model(int argc, char **argv);
int cli_dataset(int argc, char **argv);
/* `plan`: exit 0 when the memory plan fits, 1 when it does not or on errors, 2 on usage errors. */
int cli_plan(int argc, char **argv);
/* `bench`: timed training steps of a random model; exit 0, 1 on errors, 2 on usage errors. */
int cli_bench(int argc, char **argv);
/* `train`: exit 0 done or stopped, 1 failed, 2 usage or config error, 3 aborted (docs/protocol.md). */
int cli_train(int argc, char **argv);

#endif
