/* Subcommands of the canopy executable. Each returns the process exit code of
 * the contract: 0 all done, 3 finished with some images failed, 2 usage or
 * configuration error, 1 fatal runtime error, 4 drain finished with
 * messages still waiting out a backoff (canopy/exit.h). argv[0] is the command name. */
#ifndef CANOPY_CLI_COMMANDS_H
#define CANOPY_CLI_COMMANDS_H

#include "canopy/exit.h"

int cmd_run(int argc, char **argv);       /* src/cli/cmd_run.c */
int cmd_drain(int argc, char **argv);     /* src/cli/cmd_drain.c */
int cmd_reprocess(int argc, char **argv); /* src/cli/cmd_drain.c */
int cmd_submit(int argc, char **argv);    /* src/cli/cmd_submit.c */
int cmd_eval(int argc, char **argv);      /* src/cli/cmd_eval.c */
int cmd_bench(int argc, char **argv);     /* src/cli/cmd_bench.c */
int cmd_devices(int argc, char **argv);   /* src/cli/cmd_devices.c */
int cmd_db(int argc, char **argv);        /* src/cli/cmd_db.c */
int cmd_config(int argc, char **argv);    /* src/cli/cmd_config.c */
int cmd_model(int argc, char **argv);     /* src/cli/cmd_model.c */
int cmd_tune(int argc, char **argv);      /* src/cli/cmd_tune.c */

#endif
