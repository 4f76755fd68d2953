/* The CLBlast tuning file: written by `canopy tune`, read and applied by
 * every OpenCL context at creation (format in tune.h). */
#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <clblast_c.h>

#include "canopy/log.h"
#include "gpu/tune.h"

const char *ocl_clblast_version(void)
{
    return CANOPY_CLBLAST_VERSION;
}

void ocl_tuning_init(ocl_tuning *t, const ocl_ctx *ctx)
{
    memset(t, 0, sizeof *t);
    snprintf(t->device, sizeof t->device, "%s", ocl_ctx_device_name(ctx));
    snprintf(t->driver, sizeof t->driver, "%s", ocl_ctx_driver(ctx));
    snprintf(t->clblast, sizeof t->clblast, "%s", ocl_clblast_version());
}

void ocl_tuning_default_path(const ocl_ctx *ctx, char *out, size_t len)
{
    const char *v = ocl_clblast_version();
    ocl_cache_file(ctx, "clblast-tuning", v, strlen(v), out, len);
}

cnp_status ocl_tuning_save(const ocl_tuning *t, const char *path, cnp_err *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        cnp_err_set(err, "tuning file %s: cannot write: %s", path, strerror(errno));
        return CNP_ERR_IO;
    }
    int ok = fprintf(f, "# CLBlast parameters for this device, written by `canopy tune`\n"
                        "format 1\ndevice %s\ndriver %s\nclblast %s\n"
                        "measured default_ms=%.3f tuned_ms=%.3f\n",
                     t->device, t->driver, t->clblast, t->default_ms, t->tuned_ms) > 0;
    for (size_t i = 0; ok && i < t->n; i++) {
        ok = fprintf(f, "kernel %s", t->k[i].name) > 0;
        for (size_t j = 0; ok && j < t->k[i].n; j++)
            ok = fprintf(f, " %s=%zu", t->k[i].keys[j], t->k[i].values[j]) > 0;
        ok = ok && fputc('\n', f) != EOF;
    }
    if (fclose(f) != 0 || !ok || rename(tmp, path) != 0) {
        cnp_err_set(err, "tuning file %s: cannot write: %s", path, strerror(errno));
        remove(tmp);
        return CNP_ERR_IO;
    }
    return CNP_OK;
}

/* The kernels canopy tunes: CLBlast's names for them. */
static bool known_kernel(const char *name)
{
    static const char *const names[] = {"Xgemm",     "XgemmDirect",  "Copy",       "Pad",
                                        "Transpose", "Padtranspose", "GemmRoutine"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i]) == 0)
            return true;
    return false;
}

bool ocl_tuning_parse_kernel(char *s, ocl_tune_kernel *k, char *why, size_t why_len)
{
    char *save = NULL, *tok = strtok_r(s, " \t", &save);
    memset(k, 0, sizeof *k);
    if (!tok || !known_kernel(tok)) {
        snprintf(why, why_len, "unknown CLBlast kernel '%s'", tok ? tok : "");
        return false;
    }
    snprintf(k->name, sizeof k->name, "%s", tok);
    while ((tok = strtok_r(NULL, " \t", &save))) {
        char *eq = strchr(tok, '=');
        size_t klen = eq ? (size_t)(eq - tok) : 0;
        bool name_ok = klen > 0 && klen < sizeof k->keys[0];
        for (size_t i = 0; name_ok && i < klen; i++)
            name_ok = isupper((unsigned char)tok[i]) || isdigit((unsigned char)tok[i]) ||
                      tok[i] == '_';
        char *end = NULL;
        errno = 0;
        unsigned long long v = eq && isdigit((unsigned char)eq[1]) ? strtoull(eq + 1, &end, 10) : 0;
        if (!name_ok || !end || *end || errno || v > 1u << 20) {
            snprintf(why, why_len, "kernel %s: '%s' is not NAME=NUMBER", k->name, tok);
            return false;
        }
        if (k->n == OCL_TUNE_MAX_PARAMS) {
            snprintf(why, why_len, "kernel %s: more than %d parameters", k->name,
                     OCL_TUNE_MAX_PARAMS);
            return false;
        }
        memcpy(k->keys[k->n], tok, klen);
        k->values[k->n++] = (size_t)v;
    }
    if (k->n == 0) {
        snprintf(why, why_len, "kernel %s: no parameters", k->name);
        return false;
    }
    return true;
}

cnp_status ocl_tuning_load(const char *path, ocl_tuning *t, cnp_err *err)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "r");
    if (!f) {
        cnp_err_set(err, "tuning file %s: cannot open: %s", path, strerror(errno));
        return CNP_ERR_IO;
    }
    char line[2048], why[256] = "";
    int lineno = 0, format = 0;
    bool have[3] = {false, false, false};
    while (!why[0] && fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            snprintf(why, sizeof why, "line longer than %zu bytes", sizeof line - 2);
            break;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (!line[0] || line[0] == '#')
            continue;
        char *sp = strchr(line, ' ');
        char *rest = sp ? sp + 1 : line + len;
        if (sp)
            *sp = 0;
        if (format == 0 && strcmp(line, "format") != 0)
            snprintf(why, sizeof why, "not a canopy tuning file (no 'format' line first)");
        else if (strcmp(line, "format") == 0) {
            if (format || strcmp(rest, "1") != 0)
                snprintf(why, sizeof why, "format '%s': this canopy reads format 1", rest);
            format = 1;
        } else if (strcmp(line, "device") == 0 && !have[0]) {
            snprintf(t->device, sizeof t->device, "%s", rest);
            have[0] = true;
        } else if (strcmp(line, "driver") == 0 && !have[1]) {
            snprintf(t->driver, sizeof t->driver, "%s", rest);
            have[1] = true;
        } else if (strcmp(line, "clblast") == 0 && !have[2]) {
            snprintf(t->clblast, sizeof t->clblast, "%s", rest);
            have[2] = true;
        } else if (strcmp(line, "measured") == 0) {
            if (sscanf(rest, "default_ms=%lf tuned_ms=%lf", &t->default_ms, &t->tuned_ms) != 2)
                snprintf(why, sizeof why, "'measured %s' is not default_ms=X tuned_ms=Y", rest);
        } else if (strcmp(line, "kernel") == 0) {
            if (t->n == OCL_TUNE_MAX_KERNELS)
                snprintf(why, sizeof why, "more than %d kernels", OCL_TUNE_MAX_KERNELS);
            else if (ocl_tuning_parse_kernel(rest, &t->k[t->n], why, sizeof why)) {
                for (size_t i = 0; i < t->n; i++)
                    if (strcmp(t->k[i].name, t->k[t->n].name) == 0)
                        snprintf(why, sizeof why, "kernel %s twice", t->k[i].name);
                t->n++;
            }
        } else
            snprintf(why, sizeof why, "unknown or repeated line '%.200s'", line);
    }
    bool read_error = ferror(f);
    fclose(f);
    if (why[0]) {
        cnp_err_set(err, "tuning file %s:%d: %s", path, lineno, why);
        return CNP_ERR_FORMAT;
    }
    if (read_error || !format || !have[0] || !have[1] || !have[2]) {
        cnp_err_set(err, "tuning file %s: %s", path,
                    read_error ? "read error"
                               : "incomplete: needs format, device, driver and clblast lines");
        return CNP_ERR_FORMAT;
    }
    return CNP_OK;
}

cnp_status ocl_tuning_check(const ocl_tuning *t, const ocl_ctx *ctx, const char *what,
                            cnp_err *err)
{
    if (strcmp(t->device, ocl_ctx_device_name(ctx)) == 0 &&
        strcmp(t->driver, ocl_ctx_driver(ctx)) == 0 &&
        strcmp(t->clblast, ocl_clblast_version()) == 0)
        return CNP_OK;
    cnp_err_set(err, "tuning file %s: tuned for '%s' (driver %s, CLBlast %s), this device is "
                "'%s' (driver %s, CLBlast %s): run `canopy tune` on this device",
                what, t->device, t->driver, t->clblast, ocl_ctx_device_name(ctx),
                ocl_ctx_driver(ctx), ocl_clblast_version());
    return CNP_ERR_CONFIG;
}

cnp_status ocl_tuning_apply(const ocl_tuning *t, const ocl_ctx *ctx, const char *what,
                            cnp_err *err)
{
    for (size_t i = 0; i < t->n; i++) {
        const ocl_tune_kernel *k = &t->k[i];
        const char *names[OCL_TUNE_MAX_PARAMS];
        for (size_t j = 0; j < k->n; j++)
            names[j] = k->keys[j];
        CLBlastStatusCode st = CLBlastOverrideParameters(
            ocl_ctx_device(ctx), k->name, CLBlastPrecisionSingle, k->n, names, k->values);
        if (st != CLBlastSuccess) {
            cnp_err_set(err, "tuning file %s: CLBlast refuses the %s parameters (status %d%s)",
                        what, k->name, (int)st,
                        st == CLBlastMissingOverrideParameter ? ": a parameter is missing" : "");
            return CNP_ERR_CONFIG;
        }
    }
    return CNP_OK;
}

static cnp_status load_check_apply(const ocl_ctx *ctx, const char *path, cnp_err *err)
{
    ocl_tuning t;
    cnp_status result = ocl_tuning_load(path, &t, err);
    if (result == CNP_OK)
        result = ocl_tuning_check(&t, ctx, path, err);
    if (result == CNP_OK)
        result = ocl_tuning_apply(&t, ctx, path, err);
    if (result == CNP_OK)
        LOG_DEBUG("gpu", "CLBlast tuning from %s: %zu kernels (%.1f ms -> %.1f ms)", path, t.n,
                  t.default_ms, t.tuned_ms);
    return result;
}

cnp_status ocl_tuning_apply_configured(const ocl_ctx *ctx, const char *configured,
                                       char *applied, size_t applied_len, cnp_err *err)
{
    static atomic_bool told;
    applied[0] = 0;
    if (strcmp(configured, "off") == 0)
        return CNP_OK;
    if (configured[0]) {
        cnp_err why;
        if (load_check_apply(ctx, configured, &why) != CNP_OK) {
            cnp_err_set(err, "[opencl] tuning_file: %.990s", why.msg);
            return CNP_ERR_CONFIG;
        }
        snprintf(applied, applied_len, "%s", configured);
        return CNP_OK;
    }
    char path[4200];
    ocl_tuning_default_path(ctx, path, sizeof path);
    if (access(path, F_OK) != 0) {
        if (!atomic_exchange(&told, true))
            LOG_INFO("gpu", "CLBlast is not tuned for %s: `canopy tune` measures its "
                     "parameters once for this device", ocl_ctx_device_name(ctx));
        return CNP_OK;
    }
    cnp_err why;
    if (load_check_apply(ctx, path, &why) != CNP_OK) {
        if (!atomic_exchange(&told, true))
            LOG_WARN("gpu", "%s; running CLBlast's defaults (`canopy tune` writes it again)",
                     why.msg);
        return CNP_OK;
    }
    snprintf(applied, applied_len, "%s", path);
    return CNP_OK;
}
