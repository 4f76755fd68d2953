/* Process exit codes of the external contract (README "Exit codes"). The
 * pipeline returns them; the CLI passes them to exit(). */
#ifndef CANOPY_EXIT_H
#define CANOPY_EXIT_H

enum {
    CNP_EXIT_OK = 0,      /* every item reached its last state */
    CNP_EXIT_FATAL = 1,   /* fatal runtime error (set-up, device, queue unreachable) */
    CNP_EXIT_USAGE = 2,   /* usage or configuration error */
    CNP_EXIT_PARTIAL = 3, /* finished; some images failed permanently */
    CNP_EXIT_PENDING = 4, /* finished; messages left for redelivery after transient
                             failures had not come back when drain exited */
    CNP_EXIT_OUTAGE = 5,  /* a shared dependency (database, output bucket) stayed down
                             for [batch] outage_exit_seconds: messages in hand released */
};

#endif
