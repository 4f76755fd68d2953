/* The health gate (src/pipeline/health.c) on an injected clock: probes with
 * capped doubling waits, intake stopped while an outage is ridden out and
 * resumed after it, the outage exit, cancel, and the lost device. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#include "pipeline/health.h"
#include "testutil.h"

/* A clock that moves only when the gate sleeps, recording the waits
 * between probes. */
struct fake {
    pthread_mutex_t lock;
    double t;
    double slept;            /* since the last probe */
    double waits[64];
    int nwaits;
    int fail_probes;         /* probes that fail before one succeeds; -1: all */
    int probes;
    atomic_bool intake_blocked_seen;
    pl_health *h;
};

static double fake_now(void *ctx)
{
    struct fake *f = ctx;
    pthread_mutex_lock(&f->lock);
    double t = f->t;
    pthread_mutex_unlock(&f->lock);
    return t;
}

static void fake_sleep(void *ctx, double s)
{
    struct fake *f = ctx;
    pthread_mutex_lock(&f->lock);
    f->t += s;
    f->slept += s;
    pthread_mutex_unlock(&f->lock);
    usleep(200); /* a thread riding out an endless outage does not spin */
}

static cnp_status probe(void *arg, cnp_err *err)
{
    struct fake *f = arg;
    if (f->nwaits < 64)
        f->waits[f->nwaits++] = f->slept;
    f->slept = 0;
    f->probes++;
    /* While the outage is ridden out the gate reports it. */
    if (pl_health_down(f->h))
        atomic_store(&f->intake_blocked_seen, true);
    if (f->fail_probes < 0 || f->probes <= f->fail_probes) {
        cnp_err_set(err, "connection refused (probe %d)", f->probes);
        return CNP_ERR_TRANSIENT;
    }
    return CNP_OK;
}

static pl_health *make(struct fake *f, double exit_s, const volatile sig_atomic_t *cancel)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->lock, NULL);
    f->t = 1000;
    pl_health_params p = {.probe_first_seconds = 1, .probe_max_seconds = 8,
                          .exit_seconds = exit_s, .device_lost_chunks = 2};
    pl_health *h = NULL;
    cnp_err err;
    CHECK_FATAL(pl_health_create(&p, cancel, &h, &err) == CNP_OK);
    pl_health_clock c = {.now = fake_now, .sleep = fake_sleep, .ctx = f};
    pl_health_set_clock(h, &c);
    f->h = h;
    return h;
}

/* Recovery after 6 failed probes: waits 1, 2, 4, 8, 8, 8, 8 (capped), then
 * intake resumes. */
static void test_recovers(void)
{
    struct fake f;
    pl_health *h = make(&f, 900, NULL);
    f.fail_probes = 6;
    cnp_err first, err;
    cnp_err_set(&first, "commit: server closed the connection");
    CHECK(pl_health_ride_out(h, "PostgreSQL", &first, probe, &f, &err) == CNP_OK);
    CHECK(f.probes == 7, "probes %d", f.probes);
    static const double want[] = {1, 2, 4, 8, 8, 8, 8};
    CHECK(f.nwaits == 7);
    for (int i = 0; i < 7 && i < f.nwaits; i++)
        CHECK(f.waits[i] == want[i], "wait %d: %.2f s, expected %.0f", i, f.waits[i], want[i]);
    CHECK(atomic_load(&f.intake_blocked_seen));
    CHECK(!pl_health_down(h));
    CHECK(!pl_health_gave_up(h));
    CHECK(pl_health_intake_wait(h));
    CHECK(f.t == 1000 + 39, "recovered at %.2f", f.t);
    pl_health_free(h);
}

/* Down for longer than exit_seconds: the run gives up, intake ends, and a
 * later outage is not ridden out again. */
static void test_gives_up(void)
{
    struct fake f;
    pl_health *h = make(&f, 20, NULL);
    f.fail_probes = -1;
    cnp_err first, err;
    cnp_err_set(&first, "PutObject: 503");
    cnp_status st = pl_health_ride_out(h, "the output bucket", &first, probe, &f, &err);
    CHECK(st == CNP_ERR_TRANSIENT);
    /* Probes after 1, 3, 7, 15 s; the last wait is cut to the 20 s limit. */
    CHECK(f.probes == 5, "probes %d", f.probes);
    CHECK(f.t == 1020, "gave up at %.2f", f.t);
    CHECK(strstr(err.msg, "probe 5") != NULL, "%s", err.msg);
    CHECK(pl_health_gave_up(h));
    CHECK(!pl_health_intake_wait(h));
    int before = f.probes;
    CHECK(pl_health_ride_out(h, "PostgreSQL", &first, probe, &f, &err) != CNP_OK);
    CHECK(f.probes == before, "probed after giving up");
    pl_health_free(h);
}

struct rider {
    struct fake *f;
    cnp_status st;
};

static void *ride(void *arg)
{
    struct rider *r = arg;
    cnp_err first, err;
    cnp_err_set(&first, "down");
    r->st = pl_health_ride_out(r->f->h, "PostgreSQL", &first, probe, r->f, &err);
    return NULL;
}

struct intake {
    pl_health *h;
    atomic_bool returned;
    bool go;
};

static void *intake(void *arg)
{
    struct intake *in = arg;
    in->go = pl_health_intake_wait(in->h);
    atomic_store(&in->returned, true);
    return NULL;
}

/* The source's gate blocks while another thread rides out an outage, and
 * a cancel ends both. */
static void test_intake_blocks_and_cancel(void)
{
    static volatile sig_atomic_t cancel;
    cancel = 0;
    struct fake f;
    pl_health *h = make(&f, 1e9, &cancel);
    f.fail_probes = -1;
    struct rider r = {.f = &f};
    pthread_t th, ti;
    CHECK_FATAL(pthread_create(&th, NULL, ride, &r) == 0);
    while (!pl_health_down(h))
        usleep(1000);
    struct intake in = {.h = h};
    CHECK_FATAL(pthread_create(&ti, NULL, intake, &in) == 0);
    usleep(100000);
    CHECK(!atomic_load(&in.returned), "intake went on during the outage");
    cancel = 1;
    pthread_join(ti, NULL);
    pthread_join(th, NULL);
    CHECK(!in.go);
    CHECK(r.st != CNP_OK);
    CHECK(!pl_health_gave_up(h), "a cancel is not an outage exit");
    pl_health_free(h);
}

static void test_device(void)
{
    struct fake f;
    pl_health *h = make(&f, 900, NULL);
    CHECK(!pl_health_device_result(h, 0, 0));
    CHECK(!pl_health_device_result(h, 3, 3));
    CHECK(!pl_health_device_result(h, 3, 2), "a success resets the count");
    CHECK(!pl_health_device_result(h, 2, 2));
    CHECK(!pl_health_device_result(h, 0, 0), "an empty slice changes nothing");
    CHECK(pl_health_device_result(h, 1, 1), "two slices in a row failed on the device");
    pl_health_free(h);
}

int main(void)
{
    test_recovers();
    test_gives_up();
    test_intake_blocks_and_cancel();
    test_device();
    return TEST_RESULT();
}
