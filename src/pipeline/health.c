/* The run's health gate (health.h): outages ridden out with intake stopped,
 * probes with capped backoff, the outage exit and the lost device. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "canopy/buf.h"
#include "canopy/log.h"
#include "pipeline/health.h"

struct pl_health {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pl_health_params p;
    const volatile sig_atomic_t *cancel;
    pl_health_clock clock;
    int down;           /* outages being ridden out now */
    bool gave_up;
    int device_bad;     /* consecutive slices failed on the device */
};

static double real_now(void *ctx)
{
    (void)ctx;
    return cnp_now();
}

static void real_sleep(void *ctx, double seconds)
{
    (void)ctx;
    struct timespec ts = {.tv_sec = (time_t)seconds,
                          .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

cnp_status pl_health_create(const pl_health_params *p, const volatile sig_atomic_t *cancel,
                            pl_health **out, cnp_err *err)
{
    pl_health *h = calloc(1, sizeof *h);
    *out = NULL;
    if (!h) {
        cnp_err_set(err, "out of memory");
        return CNP_ERR_NOMEM;
    }
    h->p = *p;
    if (h->p.probe_first_seconds <= 0)
        h->p.probe_first_seconds = 1;
    if (h->p.probe_max_seconds < h->p.probe_first_seconds)
        h->p.probe_max_seconds = h->p.probe_first_seconds;
    if (h->p.device_lost_chunks < 1)
        h->p.device_lost_chunks = 1;
    h->cancel = cancel;
    h->clock = (pl_health_clock){.now = real_now, .sleep = real_sleep};
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    *out = h;
    return CNP_OK;
}

void pl_health_free(pl_health *h)
{
    if (!h)
        return;
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->cond);
    free(h);
}

void pl_health_set_clock(pl_health *h, const pl_health_clock *clock)
{
    h->clock = *clock;
}

static bool cancelled(const pl_health *h)
{
    return h->cancel && *h->cancel;
}

/* Sleeps `seconds` in steps of at most a quarter second, so that a cancel
 * is seen soon. */
static void nap(pl_health *h, double seconds)
{
    while (seconds > 0 && !cancelled(h)) {
        double step = seconds < 0.25 ? seconds : 0.25;
        h->clock.sleep(h->clock.ctx, step);
        seconds -= step;
    }
}

static void outage_end(pl_health *h)
{
    pthread_mutex_lock(&h->lock);
    h->down--;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

cnp_status pl_health_ride_out(pl_health *h, const char *dependency, const cnp_err *first,
                              pl_health_probe probe, void *arg, cnp_err *err)
{
    *err = *first;
    pthread_mutex_lock(&h->lock);
    if (h->gave_up) {
        pthread_mutex_unlock(&h->lock);
        return CNP_ERR_TRANSIENT;
    }
    h->down++;
    pthread_mutex_unlock(&h->lock);
    double t0 = h->clock.now(h->clock.ctx), wait = h->p.probe_first_seconds;
    LOG_ERROR("health", "%s is down (%s): intake stopped, the messages in hand are kept; "
                        "probing with backoff up to %.0f s, giving up after %.0f s",
              dependency, first->msg, h->p.probe_max_seconds, h->p.exit_seconds);
    cnp_status st = CNP_ERR_TRANSIENT;
    for (int probes = 1;; probes++) {
        double left = t0 + h->p.exit_seconds - h->clock.now(h->clock.ctx);
        if (left <= 0 || cancelled(h))
            break;
        nap(h, wait < left ? wait : left);
        if (cancelled(h))
            break;
        st = probe(arg, err);
        if (st == CNP_OK) {
            LOG_INFO("health", "%s answers again after %.0f s (%d probes): intake resumes",
                     dependency, h->clock.now(h->clock.ctx) - t0, probes);
            outage_end(h);
            return CNP_OK;
        }
        LOG_WARN("health", "%s still down after %.0f s: %s", dependency,
                 h->clock.now(h->clock.ctx) - t0, err->msg);
        wait = wait * 2 > h->p.probe_max_seconds ? h->p.probe_max_seconds : wait * 2;
    }
    if (!cancelled(h)) {
        LOG_ERROR("health", "%s down for %.0f s ([batch] outage_exit_seconds): releasing the "
                            "messages in hand and exiting",
                  dependency, h->clock.now(h->clock.ctx) - t0);
        pthread_mutex_lock(&h->lock);
        h->gave_up = true;
        pthread_mutex_unlock(&h->lock);
    }
    outage_end(h);
    return st == CNP_OK ? CNP_ERR_TRANSIENT : st;
}

bool pl_health_intake_wait(pl_health *h)
{
    pthread_mutex_lock(&h->lock);
    while (h->down > 0 && !h->gave_up && !cancelled(h)) {
        /* Timed: a cancel (a signal handler's flag) does not signal cond. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&h->cond, &h->lock, &ts);
    }
    bool go = !h->gave_up && !cancelled(h);
    pthread_mutex_unlock(&h->lock);
    return go;
}

bool pl_health_gave_up(pl_health *h)
{
    pthread_mutex_lock(&h->lock);
    bool g = h->gave_up;
    pthread_mutex_unlock(&h->lock);
    return g;
}

bool pl_health_down(pl_health *h)
{
    pthread_mutex_lock(&h->lock);
    bool d = h->down > 0;
    pthread_mutex_unlock(&h->lock);
    return d;
}

bool pl_health_device_result(pl_health *h, size_t tried, size_t device_failed)
{
    if (tried == 0)
        return false;
    pthread_mutex_lock(&h->lock);
    if (device_failed < tried)
        h->device_bad = 0;
    else
        h->device_bad++;
    bool lost = h->device_bad >= h->p.device_lost_chunks;
    pthread_mutex_unlock(&h->lock);
    return lost;
}
