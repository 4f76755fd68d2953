/* Placeholder until its owner lands the command. */
#include <stdio.h>

#include "cli/commands.h"

int cmd_eval(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "canopy %s: not available in this build yet\n", argv[0]);
    return CNP_EXIT_FATAL;
}
