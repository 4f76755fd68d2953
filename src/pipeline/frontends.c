/* The three front ends, each a source and a sink on the same stages:
 *
 *   pl_drain      SQS messages   -> S3 + PostgreSQL + output queue, acknowledged
 *   pl_reprocess  an S3 listing  -> S3 + PostgreSQL + output queue
 *   pl_run_files  local files    -> a local directory
 *
 * Each opens what its source and sink need, hands every module only its
 * own section of the configuration, runs the pipeline and closes. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "canopy/exit.h"
#include "canopy/log.h"
#include "canopy/raster.h"
#include "canopy/store.h"
#include "pipeline/sources.h"

/* What every front end opens: model, device, pool. */
struct engine {
    det_model *model;
    pipe_device *dev;
    cnp_pool *pool;
    const char *model_version;
};

static int engine_open(const cnp_config *cfg, const char *mode, struct engine *e, cnp_err *err)
{
    memset(e, 0, sizeof *e);
    if (pipe_model_load(&cfg->detector, &e->model, err) != CNP_OK)
        return CNP_EXIT_FATAL;
    e->model_version = e->model ? det_model_version(e->model) : "none";
    pipe_device_params dp = {.opencl = &cfg->opencl, .binarize = &cfg->binarize,
                             .detector = &cfg->detector, .device = &cfg->device,
                             .classifier = &cfg->classifier};
    if (pipe_device_create(&dp, e->model, &e->dev, err) != CNP_OK)
        return CNP_EXIT_FATAL;
    if (cnp_pool_create(cfg->batch.threads, &e->pool, err) != CNP_OK)
        return CNP_EXIT_FATAL;
    LOG_INFO(mode, "%s, model %s, %d decode/encode threads", pipe_device_description(e->dev),
             e->model_version, cnp_pool_threads(e->pool));
    return CNP_EXIT_OK;
}

static void engine_close(struct engine *e)
{
    cnp_pool_free(e->pool);
    pipe_device_free(e->dev);
    det_model_free(e->model);
}

static void ctx_init(pl_ctx *x, const cnp_config *cfg, const char *mode, const pl_hooks *hooks,
                     const struct engine *e)
{
    pl_stage_params sp = {
        .max_pixels = (uint64_t)cfg->limits.max_pixels,
        .max_object_bytes = cfg->input.max_object_bytes,
        .spill_bytes = cfg->input.spill_bytes,
        .out_spill_bytes = cfg->output.spill_bytes,
        .output = cfg->output,
        .detector = e->model != NULL,
        .model_version = e->model_version,
        .model = e->model,
        .classifier = e->dev ? pipe_device_classifier(e->dev) : NULL,
        .binarize = cfg->binarize,
        .window_pixels = (uint64_t)cfg->limits.window_pixels,
    };
    /* What the device holds bounds the images processed whole: larger TIFFs
     * go through windows; a larger PNG or JPEG fails permanently, naming the
     * device's limit. */
    uint64_t dev_px = e->dev ? pipe_device_max_pixels(e->dev) : 0;
    if (dev_px && sp.window_pixels > dev_px) {
        LOG_INFO(mode, "[limits] window_pixels lowered from %llu to %llu: the most the "
                       "device holds in one buffer", (unsigned long long)sp.window_pixels,
                 (unsigned long long)dev_px);
        sp.window_pixels = dev_px;
    }
    snprintf(sp.types, sizeof sp.types, "%s", cfg->classifier.types);
    pl_ctx_init(x, mode, hooks, &sp, cfg->batch.max_chunks_in_flight,
                (uint64_t)cfg->batch.max_inflight_mpix * 1000000u);
    x->dev = e->dev;
    x->pool = e->pool;
    x->mcfg = cfg->metrics;
}

/* ---- the cloud front ends (drain, reprocess) ------------------------------ */

struct cloud {
    aws_client *aws;
    pg_store *db;
    struct engine e;
    int64_t run_id;
};

static int cloud_open(const cnp_config *cfg, const char *mode, bool engine, struct cloud *cl,
                      cnp_err *err)
{
    memset(cl, 0, sizeof *cl);
    if (!cfg->output.bucket[0]) {
        cnp_err_set(err, "[output] bucket is not set");
        return CNP_EXIT_USAGE;
    }
    cnp_status st = aws_client_create(&cfg->aws, &cl->aws, err);
    if (st == CNP_OK)
        st = aws_client_check_credentials(cl->aws, err);
    /* A missing profile exits 2, missing credentials 1; a credential service
     * that is down for now (transient) is the drain loop's to wait out. */
    if (st != CNP_OK && st != CNP_ERR_TRANSIENT)
        return cnp_exit_for_setup(st);
    /* Before the database, the model and the device: a typo fails at once. */
    if (pl_preflight(cl->aws, strcmp(mode, "drain") == 0 ? cfg->input.queue_url : NULL,
                     cfg->output.bucket, cfg->output.prefix, err) != CNP_OK)
        return CNP_EXIT_FATAL;
    if (pg_store_open_config(&cfg->postgres, &cl->db, err) != CNP_OK)
        return CNP_EXIT_FATAL;
    int applied = 0, version = 0;
    if (pg_store_migrate(cl->db, &applied, &version, err) != CNP_OK)
        return CNP_EXIT_FATAL;
    if (applied)
        LOG_INFO(mode, "database schema migrated to version %d", version);
    if (!engine) { /* reprocess --dry-run: the model names the version, no device */
        if (pipe_model_load(&cfg->detector, &cl->e.model, err) != CNP_OK)
            return CNP_EXIT_FATAL;
        cl->e.model_version = cl->e.model ? det_model_version(cl->e.model) : "none";
        return CNP_EXIT_OK;
    }
    return engine_open(cfg, mode, &cl->e, err);
}

static void cloud_close(struct cloud *cl)
{
    engine_close(&cl->e);
    pg_store_free(cl->db);
    aws_client_free(cl->aws);
}

/* Runs x with a cloud sink around the run's row in the database. */
static int cloud_run(pl_ctx *x, const cnp_config *cfg, struct cloud *cl, pl_counts *counts,
                     cnp_err *err)
{
    char host[256] = "unknown";
    gethostname(host, sizeof host - 1);
    if (pg_run_begin(cl->db, x->mode, host, &cl->run_id, err) != CNP_OK)
        return CNP_EXIT_FATAL;
    pl_cloud_params cp = {.bucket = cfg->output.bucket, .prefix = cfg->output.prefix,
                          .queue_url = cfg->output.queue_url, .run_id = cl->run_id,
                          .metrics = x->metrics};
    pl_cloud_sink *sink = NULL;
    if (pl_cloud_sink_create(cl->aws, cl->db, &cp, &sink, err) != CNP_OK)
        return CNP_EXIT_FATAL;
    /* Notifications an earlier process committed but could not send. */
    cnp_err oerr;
    if (pl_cloud_sink_flush(sink, x->mode, &oerr) != CNP_OK)
        LOG_WARN(x->mode, "notification outbox: %s", oerr.msg);
    pl_health_params hp = {.probe_first_seconds = 1,
                           .probe_max_seconds = cfg->batch.outage_probe_seconds,
                           .exit_seconds = cfg->batch.outage_exit_seconds,
                           .device_lost_chunks = 2};
    if (pl_health_create(&hp, x->hooks ? x->hooks->cancel : NULL, &x->health, err) != CNP_OK) {
        pl_cloud_sink_free(sink);
        return CNP_EXIT_FATAL;
    }
    x->sink = &pl_sink_cloud_ops;
    x->sink_self = sink;
    pl_counts c;
    int rc = pl_ctx_run(x, &c);
    if (pl_cloud_sink_flush(sink, x->mode, &oerr) != CNP_OK)
        LOG_WARN(x->mode, "notification outbox: %s", oerr.msg);
    pl_health_free(x->health);
    x->health = NULL;
    c.run_id = cl->run_id;
    pg_run_counts rcounts = {.images_ok = c.ok, .images_failed = c.failed, .trees = c.trees,
                             .exit_code = rc};
    cnp_err ferr;
    if (pg_run_finish(cl->db, cl->run_id, &rcounts, &ferr) != CNP_OK)
        LOG_WARN(x->mode, "recording the end of run %lld: %s", (long long)cl->run_id, ferr.msg);
    if (counts)
        *counts = c;
    pl_cloud_sink_free(sink);
    return rc;
}

int pl_drain(const cnp_config *cfg, const pl_drain_options *opt, const pl_hooks *hooks,
             pl_counts *counts, cnp_err *err)
{
    struct cloud cl;
    pl_ctx x;
    pl_sqs_source *src = NULL;
    if (counts)
        memset(counts, 0, sizeof *counts);
    if (!cfg->input.queue_url[0]) {
        cnp_err_set(err, "[input] queue_url is not set");
        return CNP_EXIT_USAGE;
    }
    cnp_metrics *metrics = NULL;
    int rc = cloud_open(cfg, "drain", true, &cl, err);
    if (rc == CNP_EXIT_OK && cnp_metrics_create(&metrics, err) != CNP_OK)
        rc = CNP_EXIT_FATAL;
    if (rc != CNP_EXIT_OK)
        goto out;
    pl_sqs_params sp = {
        .metrics = metrics,
        .queue_url = cfg->input.queue_url,
        .chunk_size = cfg->batch.size,
        .wait_seconds = cfg->batch.wait_seconds,
        .visibility_timeout = cfg->batch.visibility_timeout,
        .idle_exit_seconds = cfg->batch.idle_exit_seconds,
        .unreachable_exit_seconds = cfg->batch.unreachable_exit_seconds,
        .retry_backoff_seconds = cfg->batch.retry_backoff_seconds,
        .follow = opt->follow,
        .max_messages = opt->max_messages,
    };
    if (pl_sqs_source_create(cl.aws, &sp, &src, err) != CNP_OK) {
        rc = CNP_EXIT_FATAL;
        goto out;
    }
    if (!pl_sqs_source_start(src)) {
        cnp_err_set(err, "cannot start the heartbeat thread");
        rc = CNP_EXIT_FATAL;
        goto out;
    }
    ctx_init(&x, cfg, "drain", hooks, &cl.e);
    x.metrics = metrics;
    x.src = &pl_source_sqs_ops;
    x.src_self = src;
    x.redelivers = true;
    rc = cloud_run(&x, cfg, &cl, counts, err);
    pl_ctx_destroy(&x);
out:
    pl_sqs_source_free(src);
    cloud_close(&cl);
    cnp_metrics_free(metrics);
    return rc;
}

/* ---- reprocess: the listing ------------------------------------------------ */

struct listing {
    s3_list_entry *items;
    size_t n, cap, skipped;
};

/* A listing has names only: rasters are known by their extension. */
static bool is_raster_key(const char *key)
{
    static const char *const ext[] = {".png", ".tif", ".tiff", ".jpg", ".jpeg"};
    const char *dot = strrchr(key, '.');
    for (size_t i = 0; dot && i < sizeof ext / sizeof ext[0]; i++)
        if (strcasecmp(dot, ext[i]) == 0)
            return true;
    return false;
}

static bool listing_take(struct listing *l, s3_list_entry *e)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        s3_list_entry *grown = realloc(l->items, cap * sizeof *grown);
        if (!grown)
            return false;
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->n++] = *e;
    e->key = NULL; /* moved */
    return true;
}

/* Filters one page: keeps the rasters (.png, .tif, .tiff, .jpg, .jpeg) not
 * yet processed at the same etag and model version (all with force). */
static cnp_status listing_page(struct cloud *cl, const char *bucket, s3_list_page *page,
                               const pl_reprocess_options *opt, const pl_hooks *hooks,
                               struct listing *l, cnp_err *err)
{
    cnp_status result = CNP_ERR_NOMEM;
    pg_image_ref *refs = calloc(page->n ? page->n : 1, sizeof *refs);
    pg_seen *seen = calloc(page->n ? page->n : 1, sizeof *seen);
    size_t nref = 0;
    if (!refs || !seen) {
        cnp_err_set(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < page->n; i++)
        if (is_raster_key(page->entries[i].key))
            refs[nref++] = (pg_image_ref){bucket, page->entries[i].key, page->entries[i].etag,
                                          cl->e.model_version};
    if (nref && !opt->force && (result = pg_images_seen(cl->db, refs, nref, seen, err)) != CNP_OK)
        goto out;
    for (size_t i = 0, r = 0; i < page->n; i++) {
        if (!is_raster_key(page->entries[i].key))
            continue;
        bool skip = !opt->force && seen[r++] == PG_SEEN_OK;
        if (hooks && hooks->on_listed)
            hooks->on_listed(hooks->ctx, bucket, page->entries[i].key, skip);
        if (skip) {
            l->skipped++;
        } else if (!listing_take(l, &page->entries[i])) {
            cnp_err_set(err, "out of memory");
            result = CNP_ERR_NOMEM;
            goto out;
        }
    }
    result = CNP_OK;
out:
    free(refs);
    free(seen);
    return result;
}

static cnp_status list_pending(struct cloud *cl, const char *bucket, const char *prefix,
                               const pl_reprocess_options *opt, const pl_hooks *hooks,
                               struct listing *l, cnp_err *err)
{
    char *token = NULL;
    cnp_status result;
    for (;;) {
        s3_list_page page;
        result = s3_list_objects(cl->aws, bucket, prefix, NULL, token, 1000, &page, err);
        free(token);
        token = NULL;
        if (result != CNP_OK) {
            cnp_err_prefix(err, "s3://%s/%s", bucket, prefix);
            return result;
        }
        if (page.next_token && !(token = strdup(page.next_token)))
            result = CNP_ERR_NOMEM;
        if (result == CNP_OK)
            result = listing_page(cl, bucket, &page, opt, hooks, l, err);
        s3_list_page_free(&page);
        if (result != CNP_OK || !token)
            break;
    }
    free(token);
    return result;
}

int pl_reprocess(const cnp_config *cfg, const char *bucket, const char *prefix,
                 const pl_reprocess_options *opt, const pl_hooks *hooks, pl_counts *counts,
                 cnp_err *err)
{
    struct cloud cl;
    struct listing l = {0};
    pl_listing_source *src = NULL;
    cnp_metrics *metrics = NULL;
    pl_ctx x;
    if (counts)
        memset(counts, 0, sizeof *counts);
    int rc = cloud_open(cfg, "reprocess", !opt->dry_run, &cl, err);
    if (rc != CNP_EXIT_OK)
        goto out;
    if (list_pending(&cl, bucket, prefix, opt, hooks, &l, err) != CNP_OK) {
        rc = CNP_EXIT_FATAL;
        goto out;
    }
    LOG_INFO("reprocess", "s3://%s/%s: %zu to process, %zu already processed at this etag and "
                          "model version%s",
             bucket, prefix, l.n, l.skipped, opt->force ? " (--force)" : "");
    if (counts) {
        counts->total = (long long)l.n;
        counts->ok = 0;
    }
    if (opt->dry_run)
        goto out;
    if (pl_listing_source_create(cl.aws, bucket, l.items, l.n, cfg->batch.size, &src, err) !=
        CNP_OK) {
        rc = CNP_EXIT_FATAL;
        goto out;
    }
    if (cnp_metrics_create(&metrics, err) != CNP_OK) {
        rc = CNP_EXIT_FATAL;
        goto out;
    }
    ctx_init(&x, cfg, "reprocess", hooks, &cl.e);
    x.metrics = metrics;
    atomic_store(&x.total, (long long)l.n);
    x.src = &pl_source_listing_ops;
    x.src_self = src;
    rc = cloud_run(&x, cfg, &cl, counts, err);
    pl_ctx_destroy(&x);
out:
    cnp_metrics_free(metrics);
    pl_listing_source_free(src);
    for (size_t i = 0; i < l.n; i++)
        free(l.items[i].key);
    free(l.items);
    cloud_close(&cl);
    return rc;
}

/* ---- run: local files ------------------------------------------------------ */

struct files {
    pl_file *v;
    size_t n, cap;
    size_t skipped;
};

/* A file is taken by its content (PNG, TIFF, JPEG) or by a raster
 * extension: a corrupt x.png is reported as failed, not skipped. */
static bool is_raster_file(const char *path)
{
    if (is_raster_key(path))
        return true;
    unsigned char head[16];
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    return img_raster_sniff(head, n) != NULL;
}

static int file_cmp(const void *a, const void *b)
{
    return strcmp(((const pl_file *)a)->path, ((const pl_file *)b)->path);
}

static cnp_status files_add(struct files *f, const char *dir, const char *name, cnp_err *err)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 64;
        pl_file *grown = realloc(f->v, cap * sizeof *grown);
        if (!grown)
            goto nomem;
        f->v = grown;
        f->cap = cap;
    }
    size_t len = strlen(dir) + strlen(name) + 2;
    pl_file *pf = &f->v[f->n];
    pf->path = malloc(len);
    if (!pf->path)
        goto nomem;
    snprintf(pf->path, len, "%s%s%s", dir, dir[0] ? "/" : "", name);
    const char *slash = strrchr(pf->path, '/');
    pf->stem = pl_output_stem("", slash ? slash + 1 : pf->path);
    if (!pf->stem) {
        free(pf->path);
        goto nomem;
    }
    f->n++;
    return CNP_OK;
nomem:
    cnp_err_set(err, "out of memory");
    return CNP_ERR_NOMEM;
}

/* Adds a file, or every raster of a directory (by content: PNG, TIFF,
 * JPEG; sorted, not recursive), logging what it skipped. In the output
 * directory itself (out: its stat, NULL when it does not exist yet) files
 * named as canopy's outputs are not inputs: a second run there would
 * otherwise process the first one's masks. */
static cnp_status collect(const char *input, const struct stat *out, struct files *f,
                          cnp_err *err)
{
    struct stat st;
    if (stat(input, &st) != 0) {
        cnp_err_set(err, "--input %s: %s", input, strerror(errno));
        return CNP_ERR_CONFIG;
    }
    if (!S_ISDIR(st.st_mode))
        return files_add(f, "", input, err);
    DIR *d = opendir(input);
    if (!d) {
        cnp_err_set(err, "--input %s: %s", input, strerror(errno));
        return CNP_ERR_CONFIG;
    }
    size_t first = f->n, skipped = 0, own = 0;
    bool is_outdir = out && st.st_dev == out->st_dev && st.st_ino == out->st_ino;
    char names[512] = "";
    cnp_status result = CNP_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && result == CNP_OK) {
        if (de->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", input, de->d_name);
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            continue;
        if (is_outdir && pl_is_output_name(de->d_name)) {
            own++;
        } else if (is_raster_file(path)) {
            result = files_add(f, input, de->d_name, err);
        } else {
            if (skipped < 5)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
                         skipped ? ", " : "", de->d_name);
            skipped++;
        }
    }
    closedir(d);
    if (skipped)
        LOG_INFO("run", "%s: skipped %zu file%s that are not rasters (%s%s)", input, skipped,
                 skipped == 1 ? "" : "s", names, skipped > 5 ? ", ..." : "");
    if (own)
        LOG_INFO("run", "%s: skipped %zu output%s of canopy (the --output directory)", input,
                 own, own == 1 ? "" : "s");
    f->skipped += skipped;
    if (result == CNP_OK && f->n > first)
        qsort(f->v + first, f->n - first, sizeof *f->v, file_cmp);
    return result;
}

/* Two inputs whose outputs would have the same name are refused. */
static cnp_status check_unique(struct files *f, cnp_err *err)
{
    for (size_t i = 0; i < f->n; i++)
        for (size_t j = i + 1; j < f->n; j++)
            if (strcmp(f->v[i].stem, f->v[j].stem) == 0) {
                cnp_err_set(err, "%s and %s would both write %s.*: rename one or run them "
                                 "with different --output directories",
                            f->v[i].path, f->v[j].path, f->v[i].stem);
                return CNP_ERR_CONFIG;
            }
    return CNP_OK;
}

/* --skip-existing: drops the inputs whose outputs are complete. */
static void skip_complete(struct files *f, const char *outdir, const char *model_version)
{
    size_t kept = 0, n = f->n;
    for (size_t i = 0; i < n; i++) {
        if (pl_outputs_complete(outdir, f->v[i].stem, model_version)) {
            free(f->v[i].path);
            free(f->v[i].stem);
        } else {
            f->v[kept++] = f->v[i];
        }
    }
    f->n = kept;
    LOG_INFO("run", "--skip-existing: %zu of %zu image%s already done in %s", n - kept, n,
             n == 1 ? "" : "s", outdir);
}

static void files_free(struct files *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->v[i].path);
        free(f->v[i].stem);
    }
    free(f->v);
}

int pl_run_files(const cnp_config *cfg, const pl_files_options *opt, const pl_hooks *hooks,
                 pl_counts *counts, cnp_err *err)
{
    struct files f = {0};
    struct engine e = {0};
    pl_files_source *src = NULL;
    pl_dir_sink *sink = NULL;
    cnp_metrics *metrics = NULL;
    pl_ctx x;
    int rc = CNP_EXIT_USAGE;
    if (counts)
        memset(counts, 0, sizeof *counts);
    struct stat out_st;
    bool out_exists = stat(opt->outdir, &out_st) == 0;
    for (size_t i = 0; i < opt->ninputs; i++)
        if (collect(opt->inputs[i], out_exists ? &out_st : NULL, &f, err) != CNP_OK)
            goto out;
    if (f.n == 0) {
        cnp_err_set(err, "no raster image (PNG, GeoTIFF, JPEG) in the input%s (%zu other "
                         "file%s skipped)",
                     opt->ninputs > 1 ? "s" : "", f.skipped, f.skipped == 1 ? "" : "s");
        goto out;
    }
    if (check_unique(&f, err) != CNP_OK || pl_dir_sink_create(opt->outdir, &sink, err) != CNP_OK)
        goto out;
    if ((rc = engine_open(cfg, "run", &e, err)) != CNP_EXIT_OK)
        goto out;
    if (opt->skip_existing)
        skip_complete(&f, opt->outdir, e.model_version);
    if (pl_files_source_create(f.v, f.n, cfg->batch.size, cfg->input.max_object_bytes, &src,
                               err) != CNP_OK) {
        rc = CNP_EXIT_FATAL;
        goto out;
    }
    if (cnp_metrics_create(&metrics, err) != CNP_OK) {
        rc = CNP_EXIT_FATAL;
        goto out;
    }
    LOG_INFO("run", "%zu images to %s", f.n, opt->outdir);
    ctx_init(&x, cfg, "run", hooks, &e);
    /* Large outputs are spooled next to where they go: saving them is a
     * rename. */
    x.sp.spool_dir = opt->outdir;
    x.metrics = metrics;
    atomic_store(&x.total, (long long)f.n);
    x.src = &pl_source_files_ops;
    x.src_self = src;
    x.sink = &pl_sink_dir_ops;
    x.sink_self = sink;
    rc = pl_ctx_run(&x, counts);
    pl_ctx_destroy(&x);
out:
    cnp_metrics_free(metrics);
    pl_files_source_free(src);
    pl_dir_sink_free(sink);
    engine_close(&e);
    files_free(&f);
    return rc;
}
