/* bench_store: rows per second of the chunk write path (pg_chunk_commit:
 * COPY into staging tables + upsert, one transaction per chunk) against a
 * row-at-a-time INSERT baseline (prepared statements, one transaction per
 * chunk), measured in the same run on a throw-away database.
 *
 * usage: bench_store [--conninfo STR] [--json PATH] [--images N] [--trees N]
 *                    [--chunk N] [--repeat N] [--baseline-images N]
 *
 * --conninfo is a key=value string for the server (default: PG* variables);
 * the benchmark creates database canopy_bench_<random> there and drops it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>

#include "canopy/buf.h"
#include "canopy/store.h"

typedef struct bench_opts {
    const char *conninfo;
    const char *json;
    int images;
    long trees;
    int chunk;
    int repeat;
    int baseline_images;
} bench_opts;

typedef struct dataset {
    pg_image_result *res;
    pg_tree *trees;
    char (*keys)[64];
    char (*scans)[24];
    int n;
} dataset;

/* The throw-away database, dropped at exit whatever happens. */
static PGconn *bench_admin;
static char bench_db[64];

static void drop_db(void)
{
    if (!bench_admin || !bench_db[0])
        return;
    char sql[128];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", bench_db);
    PQclear(PQexec(bench_admin, sql));
    PQfinish(bench_admin);
    bench_admin = NULL;
}

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "bench_store: %s: %s\n", what, detail);
    exit(1);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_store [--conninfo STR] [--json PATH] [--images N] "
                    "[--trees N] [--chunk N] [--repeat N] [--baseline-images N]\n");
    exit(2);
}

static void parse_args(int argc, char **argv, bench_opts *o)
{
    *o = (bench_opts){"", NULL, 10000, 1000000, 100, 3, 500};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            usage();
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--conninfo")) o->conninfo = v;
        else if (!strcmp(a, "--json")) o->json = v;
        else if (!strcmp(a, "--images")) o->images = atoi(v);
        else if (!strcmp(a, "--trees")) o->trees = atol(v);
        else if (!strcmp(a, "--chunk")) o->chunk = atoi(v);
        else if (!strcmp(a, "--repeat")) o->repeat = atoi(v);
        else if (!strcmp(a, "--baseline-images")) o->baseline_images = atoi(v);
        else usage();
    }
    if (o->images < 1 || o->trees < 0 || o->chunk < 1 || o->repeat < 1 ||
        o->baseline_images < 0)
        usage();
    if (o->baseline_images > o->images)
        o->baseline_images = o->images;
}

/* Deterministic results: trees spread evenly over the images. */
static void make_dataset(dataset *d, int images, long trees)
{
    d->n = images;
    d->res = calloc((size_t)images, sizeof *d->res);
    d->trees = calloc((size_t)(trees ? trees : 1), sizeof *d->trees);
    d->keys = calloc((size_t)images, sizeof *d->keys);
    d->scans = calloc((size_t)images, sizeof *d->scans);
    if (!d->res || !d->trees || !d->keys || !d->scans)
        die("dataset", "out of memory");
    unsigned seed = 42;
    for (long t = 0; t < trees; t++) {
        d->trees[t] = (pg_tree){.x = (float)(rand_r(&seed) % 100000) / 100.0f,
                                .y = (float)(rand_r(&seed) % 100000) / 100.0f,
                                .radius = 2.0f + (float)(rand_r(&seed) % 1000) / 100.0f,
                                .score = (float)(rand_r(&seed) % 1000) / 1000.0f};
    }
    long next = 0;
    for (int i = 0; i < images; i++) {
        pg_image_result *r = &d->res[i];
        long end = (long)((double)trees * (i + 1) / images);
        pg_image_result_init(r);
        snprintf(d->keys[i], sizeof d->keys[i], "bench/scan-%03d/img-%06d.png", i % 500, i);
        snprintf(d->scans[i], sizeof d->scans[i], "scan-%03d", i % 500);
        r->bucket = "bench-bucket";
        r->key = d->keys[i];
        r->etag = "0123456789abcdef0123456789abcdef";
        r->model_version = "bench-model-1";
        r->scan_id = d->scans[i];
        r->address_id = "addr-1";
        r->width = 1000, r->height = 1000, r->threshold = 118, r->canopy_cover = 0.4;
        r->status = PG_IMAGE_OK;
        r->download_ms = 10, r->decode_ms = 5, r->device_ms = 2, r->encode_ms = 4;
        r->upload_ms = 8;
        r->trees = d->trees + next;
        r->n_trees = (size_t)(end - next);
        next = end;
    }
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        die(sql, PQresultErrorMessage(res));
    PQclear(res);
}

/* The 1-minute load average: wall-clock rows/s mean little on a busy host. */
static double loadavg(void)
{
    double v = NAN;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &v) != 1)
            v = NAN;
        fclose(f);
    }
    return v;
}

static long rows_of(const dataset *d, int images)
{
    long rows = images;
    for (int i = 0; i < images; i++)
        rows += (long)d->res[i].n_trees;
    return rows;
}

static double run_chunks(pg_store *s, const dataset *d, int images, int chunk)
{
    cnp_err err = {{0}};
    double t0 = cnp_now();
    for (int i = 0; i < images; i += chunk) {
        int n = images - i < chunk ? images - i : chunk;
        if (pg_chunk_commit(s, 0, d->res + i, (size_t)n, &err) != CNP_OK)
            die("pg_chunk_commit", err.msg);
    }
    return cnp_now() - t0;
}

static void fmt_real(char *out, size_t size, double v)
{
    snprintf(out, size, "%.9g", v);
}

/* The naive path: one INSERT per image and per tree, prepared statements,
 * one transaction per chunk (the same atomicity as the chunk path). */
static double run_baseline(PGconn *c, const dataset *d, int images, int chunk)
{
    double t0 = cnp_now();
    for (int i = 0; i < images; i++) {
        const pg_image_result *r = &d->res[i];
        if (i % chunk == 0)
            exec_ok(c, "BEGIN");
        char w[16], h[16], th[32], cov[32], tc[24];
        snprintf(w, sizeof w, "%d", r->width);
        snprintf(h, sizeof h, "%d", r->height);
        fmt_real(th, sizeof th, r->threshold);
        snprintf(cov, sizeof cov, "%.17g", r->canopy_cover);
        snprintf(tc, sizeof tc, "%zu", r->n_trees);
        const char *iv[11] = {r->bucket, r->key, r->etag, r->model_version, r->scan_id,
                              r->address_id, w, h, th, cov, tc};
        PGresult *res = PQexecPrepared(c, "img", 11, iv, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            die("baseline image insert", PQresultErrorMessage(res));
        char id[32];
        snprintf(id, sizeof id, "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        const char *dv[1] = {id};
        res = PQexecPrepared(c, "del", 1, dv, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            die("baseline delete", PQresultErrorMessage(res));
        PQclear(res);
        for (size_t t = 0; t < r->n_trees; t++) {
            char idx[24], x[32], y[32], rad[32], sc[32];
            snprintf(idx, sizeof idx, "%zu", t);
            fmt_real(x, sizeof x, r->trees[t].x);
            fmt_real(y, sizeof y, r->trees[t].y);
            fmt_real(rad, sizeof rad, r->trees[t].radius);
            fmt_real(sc, sizeof sc, r->trees[t].score);
            const char *tv[6] = {id, idx, x, y, rad, sc};
            res = PQexecPrepared(c, "tree", 6, tv, NULL, NULL, 0);
            if (PQresultStatus(res) != PGRES_COMMAND_OK)
                die("baseline tree insert", PQresultErrorMessage(res));
            PQclear(res);
        }
        if (i % chunk == chunk - 1 || i == images - 1)
            exec_ok(c, "COMMIT");
    }
    return cnp_now() - t0;
}

static void prepare(PGconn *c, const char *name, const char *sql)
{
    PGresult *res = PQprepare(c, name, sql, 0, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        die(name, PQresultErrorMessage(res));
    PQclear(res);
}

typedef struct measure {
    const char *path;
    int images;
    long rows;
    double med_s;
    double *runs;
} measure;

static cJSON *measure_json(const measure *m, int repeat)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "path", m->path);
    cJSON_AddNumberToObject(o, "images", m->images);
    cJSON_AddNumberToObject(o, "trees", (double)(m->rows - m->images));
    cJSON_AddNumberToObject(o, "rows", (double)m->rows);
    cJSON_AddNumberToObject(o, "seconds_median", m->med_s);
    cJSON_AddNumberToObject(o, "rows_per_second", (double)m->rows / m->med_s);
    cJSON *runs = cJSON_AddArrayToObject(o, "seconds_runs");
    for (int i = 0; i < repeat; i++)
        cJSON_AddItemToArray(runs, cJSON_CreateNumber(m->runs[i]));
    return o;
}

int main(int argc, char **argv)
{
    bench_opts o;
    parse_args(argc, argv, &o);

    /* A throw-away database on the server the conninfo names. */
    PGconn *admin = PQconnectdb(*o.conninfo ? o.conninfo : "dbname=postgres");
    if (PQstatus(admin) != CONNECTION_OK)
        die("connect", PQerrorMessage(admin));
    unsigned seed = (unsigned)((long)(cnp_now() * 1e6)) ^ (unsigned)getpid();
    char sql[160], ci[1200];
    snprintf(bench_db, sizeof bench_db, "canopy_bench_%08x", rand_r(&seed));
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", bench_db);
    exec_ok(admin, sql);
    bench_admin = admin;
    atexit(drop_db);
    snprintf(ci, sizeof ci, "%s dbname=%s", o.conninfo, bench_db);

    pg_store *s = NULL;
    cnp_err err = {{0}};
    if (pg_store_open(ci, &s, &err) != CNP_OK || pg_store_migrate(s, NULL, NULL, &err) != CNP_OK)
        die("store", err.msg);
    PGconn *c = PQconnectdb(ci);
    if (PQstatus(c) != CONNECTION_OK)
        die("connect", PQerrorMessage(c));
    prepare(c, "img",
            "INSERT INTO images (bucket, key, etag, model_version, scan_id, address_id, width, "
            "height, threshold, canopy_cover, tree_count, status) VALUES ($1, $2, $3, $4, $5, "
            "$6, $7, $8, $9, $10, $11, 'ok') ON CONFLICT (bucket, key, etag, model_version) "
            "DO UPDATE SET scan_id = EXCLUDED.scan_id, tree_count = EXCLUDED.tree_count "
            "RETURNING id");
    prepare(c, "del", "DELETE FROM trees WHERE image_ref = $1");
    prepare(c, "tree", "INSERT INTO trees (image_ref, idx, x, y, radius, score) "
                       "VALUES ($1, $2, $3, $4, $5, $6)");

    dataset d;
    make_dataset(&d, o.images, o.trees);
    measure m[3] = {
        {"chunk COPY+upsert, new rows", o.images, rows_of(&d, o.images), 0,
         calloc((size_t)o.repeat, sizeof(double))},
        {"chunk COPY+upsert, re-applied", o.images, rows_of(&d, o.images), 0,
         calloc((size_t)o.repeat, sizeof(double))},
        {"row-at-a-time INSERT, new rows", o.baseline_images, rows_of(&d, o.baseline_images), 0,
         calloc((size_t)o.repeat, sizeof(double))},
    };
    double load_before = loadavg();
    for (int r = 0; r < o.repeat; r++) {
        exec_ok(c, "TRUNCATE images, trees, runs RESTART IDENTITY CASCADE");
        exec_ok(c, "CHECKPOINT");
        m[0].runs[r] = run_chunks(s, &d, o.images, o.chunk);
        m[1].runs[r] = run_chunks(s, &d, o.images, o.chunk);
        PGresult *res = PQexec(c, "SELECT (SELECT count(*) FROM images) + "
                                  "(SELECT count(*) FROM trees)");
        long rows = strtol(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        if (rows != m[0].rows)
            die("check", "row count after the chunk path differs from the data set");
        if (o.baseline_images > 0) {
            exec_ok(c, "TRUNCATE images, trees, runs RESTART IDENTITY CASCADE");
            exec_ok(c, "CHECKPOINT");
            m[2].runs[r] = run_baseline(c, &d, o.baseline_images, o.chunk);
        }
        fprintf(stderr, "run %d/%d: %.2f s, %.2f s, %.2f s\n", r + 1, o.repeat, m[0].runs[r],
                m[1].runs[r], m[2].runs[r]);
    }
    int n_measures = o.baseline_images > 0 ? 3 : 2;
    double tmp[64];
    for (int i = 0; i < n_measures; i++) {
        int k = o.repeat < 64 ? o.repeat : 64;
        memcpy(tmp, m[i].runs, (size_t)k * sizeof(double));
        m[i].med_s = cnp_median(tmp, k);
    }

    double load_after = loadavg();
    printf("PostgreSQL %d, %d images, %ld trees, chunks of %d images, median of %d run(s); "
           "host load average %.1f before, %.1f after\n",
           PQserverVersion(c), o.images, o.trees, o.chunk, o.repeat, load_before, load_after);
    printf("%-32s %8s %9s %9s %10s\n", "path", "images", "rows", "seconds", "rows/s");
    for (int i = 0; i < n_measures; i++)
        printf("%-32s %8d %9ld %9.3f %10.0f\n", m[i].path, m[i].images, m[i].rows, m[i].med_s,
               (double)m[i].rows / m[i].med_s);
    double speedup = n_measures == 3 ? ((double)m[0].rows / m[0].med_s) /
                                           ((double)m[2].rows / m[2].med_s)
                                     : NAN;
    if (n_measures == 3)
        printf("chunk path vs row-at-a-time: %.1fx rows/s\n", speedup);

    if (o.json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "benchmark", "store");
        cJSON_AddNumberToObject(root, "server_version", PQserverVersion(c));
        cJSON_AddNumberToObject(root, "images", o.images);
        cJSON_AddNumberToObject(root, "trees", (double)o.trees);
        cJSON_AddNumberToObject(root, "chunk_images", o.chunk);
        cJSON_AddNumberToObject(root, "repeat", o.repeat);
        if (!isnan(load_before) && !isnan(load_after)) {
            cJSON_AddNumberToObject(root, "loadavg_1m_before", load_before);
            cJSON_AddNumberToObject(root, "loadavg_1m_after", load_after);
        }
        cJSON *arr = cJSON_AddArrayToObject(root, "results");
        for (int i = 0; i < n_measures; i++)
            cJSON_AddItemToArray(arr, measure_json(&m[i], o.repeat));
        if (n_measures == 3)
            cJSON_AddNumberToObject(root, "speedup_rows_per_second", speedup);
        char *text = cJSON_Print(root);
        cnp_err ferr = {{0}};
        if (!text || cnp_file_write(o.json, text, strlen(text), &ferr) != CNP_OK)
            die("json", ferr.msg);
        free(text);
        cJSON_Delete(root);
    }

    PQfinish(c);
    pg_store_free(s);
    drop_db();
    for (int i = 0; i < 3; i++)
        free(m[i].runs);
    free(d.res), free(d.trees), free(d.keys), free(d.scans);
    return 0;
}
