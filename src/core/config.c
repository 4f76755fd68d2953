/* Configuration: a table of every key drives defaults, INI parsing (inih),
 * CANOPY_<SECTION>_<KEY> environment overrides, flags and the dump. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "canopy/config.h"
#include "canopy/log.h"

enum key_type { T_STR, T_INT, T_I64, T_DBL, T_BOOL, T_ENUM, T_SET };

struct key {
    const char *section;
    const char *name;
    enum key_type type;
    size_t offset;
    size_t size;        /* T_STR: capacity of the char array */
    const char *def;    /* default, in text form */
    double min, max;    /* numeric range */
    const char *const *choices; /* T_ENUM, T_SET: NULL-terminated, index = value or bit */
    bool secret;
};

static const char *const bin_methods[] = {"otsu", "fixed", "adaptive", NULL};
static const char *const bin_channels[] = {"luma", "exg", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const mask_formats[] = {"auto", "png", "tiff", NULL};
static const char *const det_convs[] = {"auto",  "direct",    "gemm", "winograd",
                                        "pixel", "winograd4", NULL};
static const char *const backends[] = {"auto", "opencl", "cpu", NULL};
static const char *const vector_formats[] = {"geojson", "gpkg", "csv", NULL}; /* CNP_VECTOR_* */

#define F(sec, field) offsetof(cnp_config, sec.field)
#define S(sec, field) sizeof(((cnp_config *)0)->sec.field)
#define STR(sec, key, def) {#sec, #key, T_STR, F(sec, key), S(sec, key), def, 0, 0, NULL, false}
#define SECRET(sec, key) {#sec, #key, T_STR, F(sec, key), S(sec, key), "", 0, 0, NULL, true}
#define INT(sec, key, def, lo, hi) {#sec, #key, T_INT, F(sec, key), 0, def, lo, hi, NULL, false}
#define I64(sec, key, def, lo, hi) {#sec, #key, T_I64, F(sec, key), 0, def, lo, hi, NULL, false}
#define DBL(sec, key, def, lo, hi) {#sec, #key, T_DBL, F(sec, key), 0, def, lo, hi, NULL, false}
#define BOOL(sec, key, def) {#sec, #key, T_BOOL, F(sec, key), 0, def, 0, 0, NULL, false}
#define ENUM(sec, key, def, ch) {#sec, #key, T_ENUM, F(sec, key), 0, def, 0, 0, ch, false}
#define SET(sec, key, def, ch) {#sec, #key, T_SET, F(sec, key), 0, def, 0, 0, ch, false}

static const struct key keys[] = {
    STR(aws, region, ""),
    STR(aws, endpoint_url, ""),
    STR(aws, profile, ""),
    SECRET(aws, access_key_id),
    SECRET(aws, secret_access_key),
    SECRET(aws, session_token),
    BOOL(aws, verify_tls, "true"),
    STR(aws, ca_bundle, ""),
    INT(aws, connect_timeout, "10", 1, 600),
    INT(aws, request_timeout, "60", 1, 3600),
    INT(aws, max_attempts, "0", 0, 50),
    STR(aws, retry_mode, ""),
    INT(aws, max_connections, "32", 1, 1024),
    I64(aws, multipart_threshold, "64M", 5 << 20, 5e12),
    I64(aws, multipart_part_size, "16M", 5 << 20, 5e9),

    STR(input, queue_url, ""),
    STR(input, bucket, ""),
    STR(input, prefix, ""),
    I64(input, max_object_bytes, "512M", 1, 5e12),
    I64(input, spill_bytes, "64M", 0, 5e12),

    STR(output, bucket, ""),
    STR(output, prefix, ""),
    STR(output, queue_url, ""),
    INT(output, png_level, "1", 0, 9),
    BOOL(output, overlay, "true"),
    ENUM(output, mask_format, "auto", mask_formats),
    SET(output, vector, "geojson", vector_formats),
    I64(output, spill_bytes, "16M", 0, 5e12),

    INT(batch, size, "32", 1, 10000),
    INT(batch, wait_seconds, "20", 0, 20),
    INT(batch, visibility_timeout, "300", 2, 43200),
    INT(batch, idle_exit_seconds, "60", 0, 86400 * 365),
    INT(batch, threads, "0", 0, 1024),
    INT(batch, max_chunks_in_flight, "3", 1, 64),
    INT(batch, max_inflight_mpix, "256", 1, 1000000),
    INT(batch, unreachable_exit_seconds, "300", 1, 86400 * 365),
    INT(batch, outage_exit_seconds, "900", 1, 86400 * 365),
    INT(batch, outage_probe_seconds, "30", 1, 3600),
    INT(batch, retry_backoff_seconds, "5", 1, 900),

    STR(postgres, conninfo, ""),

    STR(opencl, platform, ""),
    STR(opencl, device, ""),
    STR(opencl, cache_dir, ""),
    STR(opencl, kernel_dir, ""),
    STR(opencl, tuning_file, ""),

    ENUM(device, backend, "auto", backends),
    INT(device, threads, "0", 0, 1024),

    ENUM(binarize, method, "otsu", bin_methods),
    ENUM(binarize, channel, "luma", bin_channels),
    INT(binarize, threshold, "128", 0, 255),
    INT(binarize, window, "31", 3, 255),
    INT(binarize, offset, "0", -255, 255),

    BOOL(detector, enabled, "true"),
    STR(detector, model, "models/crown-1.1.cnw"),
    DBL(detector, score_threshold, "-1", -1.0, 1.0),
    DBL(detector, nms_iou, "-1", -1.0, 1.0),
    INT(detector, tile, "1024", 64, 16384),
    INT(detector, tile_overlap, "160", 0, 4096),
    ENUM(detector, conv, "auto", det_convs),
    INT(detector, patch_size, "400", 0, 16384),
    DBL(detector, patch_overlap, "0.05", 0.0, 0.9),
    DBL(detector, patch_iou, "0.15", 0.0, 1.0),
    INT(detector, patch_batch, "0", 0, 256),

    STR(classifier, model, ""),
    STR(classifier, types, ""),

    I64(limits, max_pixels, "268435456", 1, 1e12),
    I64(limits, window_pixels, "67108864", 1, 1e12),

    STR(metrics, textfile, ""),
    INT(metrics, interval_seconds, "15", 1, 86400),

    STR(log, level, "info"),
    ENUM(log, format, "text", log_formats),
    STR(log, progress, "auto"),
};
#define NKEYS (sizeof keys / sizeof keys[0])

static const struct key *key_find(const char *section, const char *name, bool *section_known)
{
    *section_known = false;
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].section, section) != 0)
            continue;
        *section_known = true;
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    }
    return NULL;
}

static bool parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) { *out = true; return true; }
        if (strcasecmp(v, no[i]) == 0) { *out = false; return true; }
    }
    return false;
}

/* Integers accept a K/M/G/T suffix (binary multiples) for byte sizes. */
static bool parse_i64(const char *v, bool allow_suffix, int64_t *out)
{
    errno = 0;
    char *end;
    long long n = strtoll(v, &end, 10);
    if (end == v || errno == ERANGE)
        return false;
    long long mult = 1;
    if (allow_suffix && *end) {
        switch (toupper((unsigned char)*end)) {
        case 'K': mult = 1LL << 10; break;
        case 'M': mult = 1LL << 20; break;
        case 'G': mult = 1LL << 30; break;
        case 'T': mult = 1LL << 40; break;
        default: return false;
        }
        end++;
        if (toupper((unsigned char)*end) == 'I')
            end++;
        if (toupper((unsigned char)*end) == 'B')
            end++;
    }
    while (isspace((unsigned char)*end))
        end++;
    if (*end)
        return false;
    if (n > LLONG_MAX / mult || n < LLONG_MIN / mult)
        return false;
    *out = n * mult;
    return true;
}

/* Parses `value` into the field of `k`; on failure fills `why`. */
/* A comma-separated set of k's choices ("" or "none": empty) as bits. */
static bool set_parse(const struct key *k, const char *value, unsigned *out, char *why,
                      size_t why_len)
{
    unsigned bits = 0;
    const char *p = value;
    while (*p && strcasecmp(value, "none") != 0) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t len = strcspn(p, ", \t");
        int found = -1;
        for (int i = 0; len && k->choices[i]; i++)
            if (strlen(k->choices[i]) == len && strncasecmp(p, k->choices[i], len) == 0)
                found = i;
        if (found < 0) {
            size_t n = (size_t)snprintf(why, why_len, "'%.*s' is not one of", (int)len, p);
            for (int i = 0; k->choices[i] && n < why_len; i++)
                n += (size_t)snprintf(why + n, why_len - n, "%s %s", i ? "," : "",
                                      k->choices[i]);
            if (n < why_len)
                snprintf(why + n, why_len - n, " (a comma-separated list, or none)");
            return false;
        }
        bits |= 1u << found;
        p += len;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == ',')
            p++;
    }
    *out = bits;
    return true;
}

static bool key_apply(cnp_config *cfg, const struct key *k, const char *value, char *why,
                      size_t why_len)
{
    char *field = (char *)cfg + k->offset;
    switch (k->type) {
    case T_STR:
        if (strlen(value) >= k->size) {
            snprintf(why, why_len, "value longer than %zu characters", k->size - 1);
            return false;
        }
        memcpy(field, value, strlen(value) + 1);
        return true;
    case T_INT:
    case T_I64: {
        int64_t n;
        if (!parse_i64(value, k->type == T_I64, &n)) {
            snprintf(why, why_len, "'%s' is not %s", value,
                     k->type == T_I64 ? "a size (e.g. 64M)" : "an integer");
            return false;
        }
        if ((double)n < k->min || (double)n > k->max) {
            snprintf(why, why_len, "%lld is out of range [%.0f, %.0f]", (long long)n, k->min,
                     k->max);
            return false;
        }
        if (k->type == T_INT)
            *(int *)field = (int)n;
        else
            *(int64_t *)field = n;
        return true;
    }
    case T_DBL: {
        errno = 0;
        char *end;
        double d = strtod(value, &end);
        if (end == value || *end || errno == ERANGE) {
            snprintf(why, why_len, "'%s' is not a number", value);
            return false;
        }
        if (d < k->min || d > k->max) {
            snprintf(why, why_len, "%g is out of range [%g, %g]", d, k->min, k->max);
            return false;
        }
        *(double *)field = d;
        return true;
    }
    case T_BOOL:
        if (!parse_bool(value, (bool *)field)) {
            snprintf(why, why_len, "'%s' is not a boolean (true or false)", value);
            return false;
        }
        return true;
    case T_SET:
        return set_parse(k, value, (unsigned *)field, why, why_len);
    case T_ENUM:
        for (int i = 0; k->choices[i]; i++) {
            if (strcasecmp(value, k->choices[i]) == 0) {
                *(int *)field = i;
                return true;
            }
        }
        {
            size_t n = (size_t)snprintf(why, why_len, "'%s' is not one of", value);
            for (int i = 0; k->choices[i] && n < why_len; i++)
                n += (size_t)snprintf(why + n, why_len - n, "%s %s", i ? "," : "",
                                      k->choices[i]);
        }
        return false;
    }
    return false;
}

_Static_assert(NKEYS <= CNP_CONFIG_MAX_KEYS, "raise CNP_CONFIG_MAX_KEYS");

void cnp_config_defaults(cnp_config *cfg)
{
    char why[256];
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NKEYS; i++) {
        bool ok = key_apply(cfg, &keys[i], keys[i].def, why, sizeof why);
        (void)ok; /* defaults are valid by construction: tested in test_config */
        snprintf(cfg->origin[i], sizeof cfg->origin[i], "default");
    }
}

/* Edit distance of two short names (for "did you mean"). */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];
    if (la >= 63 || lb >= 63)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (tolower((unsigned char)a[i - 1]) !=
                                        tolower((unsigned char)b[j - 1]));
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (lb + 1) * sizeof *cur);
    }
    return prev[lb];
}

/* The key of section closest to name, or NULL when section has none. */
static const struct key *closest_key(const char *section, const char *name)
{
    const struct key *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].section, section) != 0)
            continue;
        size_t d = distance(name, keys[i].name);
        if (d < best_d) {
            best_d = d;
            best = &keys[i];
        }
    }
    return best;
}

/* The known section closest to name when it is within two edits (a typo),
 * else NULL. */
static const char *closest_section(const char *name, size_t *dist)
{
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < NKEYS; i++) {
        if (i > 0 && strcmp(keys[i].section, keys[i - 1].section) == 0)
            continue;
        size_t d = distance(name, keys[i].section);
        if (d < best_d) {
            best_d = d;
            best = keys[i].section;
        }
    }
    if (dist)
        *dist = best_d;
    return best;
}

/* Sets a key and records where its value came from. */
static cnp_status config_set(cnp_config *cfg, const char *section, const char *key,
                             const char *value, const char *origin, cnp_err *err)
{
    bool section_known;
    const struct key *k = key_find(section, key, &section_known);
    char why[512];
    if (!k) {
        /* Name the likely key or section, as a misspelt variable does. */
        const struct key *near = section_known ? closest_key(section, key) : NULL;
        const char *near_section = section_known ? NULL : closest_section(section, NULL);
        if (near)
            cnp_err_set(err, "unknown key '%s' in section [%s] (did you mean '%s'?)", key,
                        section, near->name);
        else if (section_known)
            cnp_err_set(err, "unknown key '%s' in section [%s]", key, section);
        else if (near_section)
            cnp_err_set(err, "unknown section [%s] (did you mean [%s]?)", section,
                        near_section);
        else
            cnp_err_set(err, "unknown section [%s]", section);
        return CNP_ERR_CONFIG;
    }
    if (!key_apply(cfg, k, value, why, sizeof why)) {
        cnp_err_set(err, "[%s] %s: %s", section, key, why);
        return CNP_ERR_CONFIG;
    }
    snprintf(cfg->origin[k - keys], sizeof cfg->origin[0], "%s", origin);
    return CNP_OK;
}

cnp_status cnp_config_set(cnp_config *cfg, const char *section, const char *key,
                          const char *value, cnp_err *err)
{
    return config_set(cfg, section, key, value, "command line", err);
}

/* Debian's inih reads lines of at most INI_MAX_LINE (200) bytes, and a
 * session token or a connection string is longer. The reader below hands
 * inih one physical line per call (so line numbers stay right); a longer
 * `key = value` line goes in as `key = \x01N`, its value kept here, and the
 * handler takes the value back. */
struct long_lines {
    FILE *f;
    int lineno;                  /* of the line last handed to inih */
    char *line;
    size_t cap;
    char **values;
    size_t n;
};

static char *long_line_reader(char *str, int num, void *stream)
{
    struct long_lines *ll = stream;
    ssize_t len = getline(&ll->line, &ll->cap, ll->f);
    if (len < 0)
        return NULL;
    ll->lineno++;
    /* Indentation means nothing in canopy's files: inih would take an
     * indented line as the continuation of the previous key's value (so an
     * indented `size = 3` would become part of `region`). Handing inih the
     * line without its leading blanks makes it a key, a comment or a syntax
     * error of its own. */
    size_t lead = strspn(ll->line, " \t");
    if (lead > 0) {
        memmove(ll->line, ll->line + lead, (size_t)len - lead + 1);
        len -= (ssize_t)lead;
    }
    /* The reader's own markers (\x01N for a long value, \x02 for an error)
     * must not come from the file: a line with control characters (NUL
     * included) is an error of its own, not a reference to a stored value. */
    for (ssize_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)ll->line[i];
        if (ch < 0x20 && ch != '\t' && ch != '\n' && ch != '\r') {
            snprintf(str, (size_t)num, "\x02 control character\n");
            return str;
        }
    }
    if (len >= num - 1 && (ll->line[0] == ';' || ll->line[0] == '#')) {
        snprintf(str, (size_t)num, ";\n"); /* a long comment is still a comment */
        return str;
    }
    if (len < num - 1) {
        memcpy(str, ll->line, (size_t)len + 1);
        return str;
    }
    char *eq = strpbrk(ll->line, "=:");
    char **grown = realloc(ll->values, (ll->n + 1) * sizeof *grown);
    if (grown)
        ll->values = grown;
    if (!eq || (size_t)(eq - ll->line) + 24 >= (size_t)num || !grown) {
        snprintf(str, (size_t)num, "\x02 line too long\n"); /* a syntax error on this line */
        return str;
    }
    char *v = eq + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    /* What inih does to a short line: an inline comment (';' after a blank)
     * is not part of the value. */
    for (char *c = v; *c; c++)
        if (*c == ';' && c > v && (c[-1] == ' ' || c[-1] == '\t')) {
            *c = '\0';
            break;
        }
    size_t vl = strlen(v);
    while (vl > 0 && isspace((unsigned char)v[vl - 1]))
        v[--vl] = '\0';
    if (!(ll->values[ll->n] = strdup(v))) {
        snprintf(str, (size_t)num, "\x02 out of memory\n");
        return str;
    }
    snprintf(str, (size_t)num, "%.*s= \x01%zu\n", (int)(eq - ll->line), ll->line, ll->n);
    ll->n++;
    return str;
}

struct parse_ctx {
    const char *path;
    struct long_lines *long_lines; /* values of lines longer than inih takes */
    cnp_config *cfg;
    bool failed;
    cnp_err err;
};

static int config_ini_handler(void *user, const char *section, const char *name, const char *value)
{
    struct parse_ctx *ctx = user;
    if (ctx->failed)
        return 0;
    if (!name) /* a section header with no keys yet (INI_CALL_HANDLER_ON_NEW_SECTION) */
        return 1;
    if (!section[0]) {
        cnp_err_set(&ctx->err, "key '%s' comes before any [section] header", name);
        ctx->failed = true;
        return 0;
    }
    if (value[0] == '\x01' && ctx->long_lines) {
        size_t i = (size_t)strtoul(value + 1, NULL, 10);
        if (i < ctx->long_lines->n)
            value = ctx->long_lines->values[i];
    }
    /* "key =;x" is a comment as "key = ;x" is (inih keeps the first as the
     * value ";x"; written back as "key = ;x" it would read as empty). */
    if (value[0] == ';')
        value = "";
    char origin[96];
    snprintf(origin, sizeof origin, "%s:%d", ctx->path,
             ctx->long_lines ? ctx->long_lines->lineno : 0);
    if (config_set(ctx->cfg, section, name, value, origin, &ctx->err) != CNP_OK) {
        ctx->failed = true;
        return 0;
    }
    return 1;
}

static void env_name(const struct key *k, char *out, size_t len)
{
    size_t n = (size_t)snprintf(out, len, "CANOPY_%s_%s", k->section, k->name);
    for (size_t i = 0; i < n && i < len; i++)
        out[i] = (char)toupper((unsigned char)out[i]);
}

/* Says what is wrong with line `lineno` of the INI file when the line itself
 * is malformed (inih reports only the first bad line's number, and keeps
 * parsing: keys after "[batch" land in the previous section, so the handler's
 * own complaint would blame the wrong thing). Returns false when the line
 * looks well formed, i.e. the handler's error is the one to report. */
static bool ini_line_problem(const char *path, int lineno, char *why, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char *whole = NULL;
    size_t cap = 0;
    ssize_t got = -1;
    for (int n = 1; (got = getline(&whole, &cap, f)) >= 0 && n < lineno; n++)
        ;
    fclose(f);
    if (got < 0) {
        free(whole);
        return false;
    }
    /* Control characters (NUL included) are refused by the reader. */
    for (ssize_t i = 0; i < got; i++) {
        unsigned char ch = (unsigned char)whole[i];
        if (ch < 0x20 && ch != '\t' && ch != '\n' && ch != '\r') {
            snprintf(why, len, "control character 0x%02x in the line", ch);
            free(whole);
            return true;
        }
    }
    char line[1024];
    snprintf(line, sizeof line, "%s", whole);
    free(whole);
    const char *p = line;
    while (isspace((unsigned char)*p))
        p++;
    p += strncmp(p, "\xef\xbb\xbf", 3) == 0 ? 3 : 0; /* UTF-8 byte order mark */
    size_t end = strlen(line);
    while (end > 0 && isspace((unsigned char)line[end - 1]))
        line[--end] = '\0';
    if (*p == '[') {
        if (strchr(p, ']'))
            return false;
        snprintf(why, len, "malformed section header '%.200s' (missing ']')", p);
        return true;
    }
    if (*p && *p != ';' && *p != '#' && !strpbrk(p, "=:")) {
        snprintf(why, len, "syntax error (expected [section] or key = value)");
        return true;
    }
    return false;
}

extern char **environ;

/* A CANOPY_<SECTION>_<KEY> variable of a known section but no known key is
 * a typo that would otherwise be ignored: an error naming the closest key.
 * So is one whose section is within two edits of a known one and whose key
 * is a key of that section (CANOPY_BACTH_SIZE). Other variables
 * (CANOPY_STACK_DIR, the tests' own) are not configuration and are left
 * alone. */
static cnp_status check_env_names(cnp_err *err)
{
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "CANOPY_", 7) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        const char *sec = *e + 7, *us = strchr(sec, '_');
        if (!eq || !us || us > eq)
            continue;
        char section[32], key[96], var[160];
        size_t sl = (size_t)(us - sec), kl = (size_t)(eq - us - 1);
        if (sl >= sizeof section || kl >= sizeof key || kl == 0)
            continue;
        for (size_t i = 0; i < sl; i++)
            section[i] = (char)tolower((unsigned char)sec[i]);
        section[sl] = '\0';
        for (size_t i = 0; i < kl; i++)
            key[i] = (char)tolower((unsigned char)us[1 + i]);
        key[kl] = '\0';
        bool known;
        if (key_find(section, key, &known))
            continue;
        const struct key *best = NULL;
        if (known) {
            best = closest_key(section, key);
        } else {
            size_t d;
            const char *near = closest_section(section, &d);
            bool near_known;
            best = near && d > 0 ? key_find(near, key, &near_known) : NULL;
            if (!best)
                continue;
        }
        snprintf(var, sizeof var, "%.*s", (int)(eq - *e), *e);
        char hint[128] = "";
        if (best)
            env_name(best, hint, sizeof hint);
        if (known)
            cnp_err_set(err, "%s: [%s] has no key '%s'%s%s%s", var, section, key,
                        best ? " (did you mean " : "", hint, best ? "?)" : "");
        else
            cnp_err_set(err, "%s: there is no section [%s] (did you mean %s?)", var, section,
                        hint);
        return CNP_ERR_CONFIG;
    }
    return CNP_OK;
}

cnp_status cnp_config_load(cnp_config *cfg, const char *path, cnp_err *err)
{
    cnp_config_defaults(cfg);
    if (path) {
        struct long_lines ll = {.f = fopen(path, "r")};
        struct parse_ctx ctx = {.cfg = cfg, .long_lines = &ll, .path = path};
        int line = ll.f ? ini_parse_stream(long_line_reader, &ll, config_ini_handler, &ctx) : -1;
        if (ll.f)
            fclose(ll.f);
        free(ll.line);
        for (size_t i = 0; i < ll.n; i++)
            free(ll.values[i]);
        free(ll.values);
        if (line < 0) {
            cnp_err_set(err, "%s: cannot read: %s", path,
                        line == -1 ? strerror(errno) : "out of memory");
            return CNP_ERR_CONFIG;
        }
        if (line > 0) {
            char why[512];
            if (ini_line_problem(path, line, why, sizeof why))
                cnp_err_set(err, "%s:%d: %s", path, line, why);
            else if (ctx.failed)
                cnp_err_set(err, "%s:%d: %s", path, line, ctx.err.msg);
            else
                cnp_err_set(err, "%s:%d: syntax error (expected [section] or key = value)",
                            path, line);
            return CNP_ERR_CONFIG;
        }
    }
    for (size_t i = 0; i < NKEYS; i++) {
        char name[128];
        char why[512];
        env_name(&keys[i], name, sizeof name);
        const char *v = getenv(name);
        if (!v)
            continue;
        if (!key_apply(cfg, &keys[i], v, why, sizeof why)) {
            cnp_err_set(err, "%s: %s", name, why);
            return CNP_ERR_CONFIG;
        }
        snprintf(cfg->origin[i], sizeof cfg->origin[i], "%.95s", name);
    }
    if (check_env_names(err) != CNP_OK)
        return CNP_ERR_CONFIG;
    if (cnp_log_level_parse(cfg->log.level) < 0) {
        cnp_err_set(err, "[log] level: '%s' is not one of debug, info, warn, error",
                    cfg->log.level);
        return CNP_ERR_CONFIG;
    }
    return CNP_OK;
}

static void dump(const cnp_config *cfg, FILE *out, bool origins)
{
    const char *section = "";
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key *k = &keys[i];
        const char *field = (const char *)cfg + k->offset;
        if (strcmp(section, k->section) != 0) {
            fprintf(out, "%s[%s]\n", i ? "\n" : "", k->section);
            section = k->section;
        }
        if (origins)
            fprintf(out, "; %s: %s\n", k->name, cfg->origin[i]);
        fprintf(out, "%s = ", k->name);
        switch (k->type) {
        case T_STR:
            if (k->secret && field[0]) {
                fprintf(out, "********\n");
            } else if (strcmp(k->section, "postgres") == 0 &&
                       strcmp(k->name, "conninfo") == 0) {
                char masked[CNP_STR_LONG * 2];
                cnp_conninfo_mask(field, masked, sizeof masked);
                fprintf(out, "%s\n", masked);
            } else {
                fprintf(out, "%s\n", field);
            }
            break;
        case T_INT: fprintf(out, "%d\n", *(const int *)field); break;
        case T_I64: fprintf(out, "%lld\n", (long long)*(const int64_t *)field); break;
        case T_DBL: fprintf(out, "%g\n", *(const double *)field); break;
        case T_BOOL: fprintf(out, "%s\n", *(const bool *)field ? "true" : "false"); break;
        case T_ENUM: fprintf(out, "%s\n", k->choices[*(const int *)field]); break;
        case T_SET: {
            unsigned bits = *(const unsigned *)field;
            const char *sep = "";
            for (int b = 0; k->choices[b]; b++)
                if (bits & (1u << b)) {
                    fprintf(out, "%s%s", sep, k->choices[b]);
                    sep = ",";
                }
            fprintf(out, "%s\n", bits ? "" : "none");
            break;
        }
        }
    }
}

void cnp_config_dump(const cnp_config *cfg, FILE *out)
{
    dump(cfg, out, false);
}

void cnp_config_dump_origins(const cnp_config *cfg, FILE *out)
{
    dump(cfg, out, true);
}

void cnp_config_apply_log(const cnp_config *cfg)
{
    int level = cnp_log_level_parse(cfg->log.level);
    if (level >= 0)
        cnp_log_set_level((enum cnp_log_level)level);
    cnp_log_set_json(cfg->log.format == CNP_LOGFMT_JSON);
}
