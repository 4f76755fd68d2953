/* Commands of the queue-driven pipeline (issue 6), not in this build yet. */
#include <stdio.h>

#include "cli/commands.h"

static int pending(const char *name)
{
    fprintf(stderr, "canopy %s: not available in this build yet\n", name);
    return CNP_EXIT_FATAL;
}

int cmd_drain(int argc, char **argv) { (void)argc; return pending(argv[0]); }
int cmd_reprocess(int argc, char **argv) { (void)argc; return pending(argv[0]); }
int cmd_submit(int argc, char **argv) { (void)argc; return pending(argv[0]); }
