/* Process exit codes of the external contract (README "Exit codes"). The
 * pipeline returns them; the CLI passes them to exit(). */
#ifndef CANOPY_EXIT_H
#define CANOPY_EXIT_H

#include "canopy/status.h"

enum {
    CNP_EXIT_OK = 0,      /* every item reached its last state */
    CNP_EXIT_FATAL = 1,   /* fatal runtime error (set-up, device, queue unreachable) */
    CNP_EXIT_USAGE = 2,   /* usage or configuration error */
    CNP_EXIT_PARTIAL = 3, /* finished; some images failed permanently */
    CNP_EXIT_PENDING = 4, /* finished; messages left for redelivery after transient
                             failures had not come back when drain exited */
    CNP_EXIT_INTERRUPTED = 5, /* run: stopped by SIGINT/SIGTERM before every input was
                                 processed (run it again, with --skip-existing to resume) */
};

/* The exit code of a command that failed while setting up (a client, its
 * credentials, a store): 2 (usage or configuration) for CNP_ERR_CONFIG, such
 * as a missing AWS profile, else 1. The mapping belongs to the exit-code
 * contract, not to the module that failed. */
static inline int cnp_exit_for_setup(cnp_status status)
{
    return status == CNP_ERR_CONFIG ? CNP_EXIT_USAGE : CNP_EXIT_FATAL;
}

#endif
