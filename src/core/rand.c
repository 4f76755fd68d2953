/* Per-thread xorshift64* generators seeded from the OS (see rand.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "canopy/rand.h"

typedef struct rng_state {
    uint64_t s;         /* 0: not seeded yet */
    unsigned fork_gen;  /* fork generation the seed belongs to */
} rng_state;

static _Thread_local rng_state tls_rng;
static atomic_uint fork_gen;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* A child must not replay its parent's stream. */
static void on_fork_child(void)
{
    atomic_fetch_add(&fork_gen, 1);
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}

static bool read_urandom(void *buf, size_t len)
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, len);
    close(fd);
    return n == (ssize_t)len;
}

/* splitmix64 finaliser: spreads a weak fallback seed over all bits. */
static uint64_t mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

bool cnp_rand_os_seed(uint64_t *seed)
{
    uint64_t v = 0;
    ssize_t n;
    do
        n = getrandom(&v, sizeof v, GRND_NONBLOCK);
    while (n < 0 && errno == EINTR);
    bool os = n == (ssize_t)sizeof v || read_urandom(&v, sizeof v);
    if (!os) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
                  ((uint64_t)getpid() << 16) ^ (uint64_t)(uintptr_t)&tls_rng);
    }
    *seed = v ? v : 0x9E3779B97F4A7C15ULL; /* xorshift must not start at 0 */
    return os;
}

static rng_state *thread_rng(void)
{
    pthread_once(&atfork_once, register_atfork);
    rng_state *r = &tls_rng;
    unsigned gen = atomic_load(&fork_gen);
    if (r->s == 0 || r->fork_gen != gen) {
        cnp_rand_os_seed(&r->s);
        r->fork_gen = gen;
    }
    return r;
}

uint32_t cnp_rand_u32(void)
{
    rng_state *r = thread_rng();
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return (uint32_t)((r->s * 2685821657736338717ULL) >> 32);
}

double cnp_rand_unit(void)
{
    uint64_t hi = cnp_rand_u32(), lo = cnp_rand_u32();
    return (double)(((hi << 32) | lo) >> 11) / (double)(1ULL << 53);
}

int cnp_jitter(int max)
{
    if (max <= 0)
        return 0;
    return (int)(cnp_rand_unit() * (double)max);
}
