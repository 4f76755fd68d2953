/* The run's health gate: tells an item's fault from a dependency's.
 *
 * Per-item retries are for faults of that item. When a shared dependency
 * (the database, the output bucket) fails for a whole chunk, the stage that
 * saw it rides the outage out here: intake stops (the source waits in
 * pl_health_intake_wait), the messages in hand stay in flight (the SQS
 * heartbeat keeps extending them, so no receive is counted), and the failed
 * operation itself is retried as the probe, with capped exponential backoff,
 * until it succeeds (intake resumes) or [batch] outage_exit_seconds pass (the
 * run gives up: what is in hand is released and the run exits
 * CNP_EXIT_OUTAGE). A device that fails every image of consecutive chunks is
 * lost: that is fatal at once (the supervisor restarts the process). */
#ifndef CANOPY_PL_HEALTH_H
#define CANOPY_PL_HEALTH_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "canopy/status.h"

typedef struct pl_health_params {
    double probe_first_seconds;  /* first wait before a probe */
    double probe_max_seconds;    /* cap of the doubling waits ([batch] outage_probe_seconds) */
    double exit_seconds;         /* [batch] outage_exit_seconds */
    int device_lost_chunks;      /* consecutive chunks failed on the device: lost */
} pl_health_params;

typedef struct pl_health pl_health;

/* True for failures a dependency may cure by itself (network, 5xx, refused
 * credentials, a service's error): those of a whole chunk are an outage. */
static inline bool pl_dependency_failure(cnp_status st)
{
    return st == CNP_ERR_TRANSIENT || st == CNP_ERR_AUTH || st == CNP_ERR_REMOTE ||
           st == CNP_ERR_NOTFOUND;
}

/* The clock and sleep of the gate; tests inject their own so that no test
 * waits for real backoffs. */
typedef struct pl_health_clock {
    double (*now)(void *ctx);
    void (*sleep)(void *ctx, double seconds);
    void *ctx;
} pl_health_clock;

cnp_status pl_health_create(const pl_health_params *p, const volatile sig_atomic_t *cancel,
                            pl_health **out, cnp_err *err);
void pl_health_free(pl_health *h);
/* Replaces the real clock (cnp_now, nanosleep); before the run starts. */
void pl_health_set_clock(pl_health *h, const pl_health_clock *clock);

/* One try of the failed operation; CNP_OK when the dependency answered. */
typedef cnp_status (*pl_health_probe)(void *arg, cnp_err *err);

/* Rides out an outage of `dependency` (named in logs): stops intake, then
 * waits and calls probe (first wait probe_first_seconds, doubling up to
 * probe_max_seconds) until it returns CNP_OK (returns CNP_OK; intake resumes
 * when no other outage is being ridden out), until exit_seconds have passed
 * since the outage began (returns the probe's last status; the run has given
 * up, see pl_health_gave_up) or until the run is cancelled. Once the run gave
 * up it returns at once without probing. `first` is the failure that led
 * here (its message is logged); err holds the last failure. Thread-safe:
 * stages may ride out outages of different dependencies at once. */
cnp_status pl_health_ride_out(pl_health *h, const char *dependency, const cnp_err *first,
                              pl_health_probe probe, void *arg, cnp_err *err);

/* The source's gate: blocks while an outage is being ridden out. Returns
 * false when intake must end (the run gave up or was cancelled). */
bool pl_health_intake_wait(pl_health *h);
/* True once an outage outlasted exit_seconds. */
bool pl_health_gave_up(pl_health *h);
/* True while an outage is being ridden out. */
bool pl_health_down(pl_health *h);

/* The device's record of one slice: `tried` items went to the device and
 * `device_failed` of them failed with a device error. Returns true when the
 * device is lost: device_lost_chunks slices in a row had every tried item
 * fail on the device. A slice with a success resets the count. */
bool pl_health_device_result(pl_health *h, size_t tried, size_t device_failed);

#endif
