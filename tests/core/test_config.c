/* Configuration: defaults, the shipped canopy.ini, environment and flag
 * overrides, and errors that name file:line and the reason. */
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include "canopy/config.h"
#include "testutil.h"

static char g_dir[] = "/tmp/canopy-test-config-XXXXXX";

static const char *write_ini(const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_defaults_match_shipped_file(void)
{
    cnp_config def, shipped;
    cnp_err err;
    cnp_config_defaults(&def);
    CHECK(def.aws.verify_tls);
    CHECK(def.batch.size == 32);
    CHECK(def.binarize.method == CNP_BIN_OTSU);
    CHECK(def.binarize.channel == CNP_CH_LUMA);
    CHECK(def.aws.multipart_threshold == 64LL << 20);
    CHECK(def.detector.score_threshold == -1); /* the model's own */
    /* config/canopy.ini documents every key with its default: loading it
     * must give exactly the defaults. */
    cnp_status st = cnp_config_load(&shipped, CANOPY_SOURCE_DIR "/config/canopy.ini", &err);
    CHECK_MSG(st == CNP_OK, "%s", err.msg);
    CHECK(memcmp(&def, &shipped, offsetof(cnp_config, origin)) == 0); /* values, not origins */
    /* And every key of the table appears in it: dump the defaults and check
     * each "key =" line is present in the file. */
    char dump[32768] = "", file[32768] = "";
    FILE *m = fmemopen(dump, sizeof dump - 1, "w");
    cnp_config_dump(&def, m);
    fclose(m);
    FILE *f = fopen(CANOPY_SOURCE_DIR "/config/canopy.ini", "r");
    size_t n = fread(file, 1, sizeof file - 1, f);
    file[n] = '\0';
    fclose(f);
    char *save = NULL;
    for (char *line = strtok_r(dump, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char key[256];
        if (line[0] == '[' || sscanf(line, "%255s =", key) != 1)
            continue;
        char needle[300];
        snprintf(needle, sizeof needle, "\n%s =", key);
        CHECK_MSG(strstr(file, needle) != NULL, "key '%s' is not documented in canopy.ini", key);
    }
    /* Its comments say what the code does (README "Install", ocl.c's
     * default_cache_dir): before, the model lookup skipped the places next to
     * the executable and the cache missed its kernels/ directory. */
    CHECK(strstr(file, "next to the executable in ../share/canopy/") != NULL,
          "canopy.ini: model lookup order");
    CHECK(strstr(file, "$XDG_CACHE_HOME/canopy/kernels") &&
              strstr(file, "~/.cache/canopy/kernels"),
          "canopy.ini: cache_dir default");
}

static void test_file_env_flags(void)
{
    cnp_config cfg;
    cnp_err err;
    const char *path = write_ini("a.ini", "[batch]\nsize = 7\n[binarize]\nmethod = adaptive\n"
                                           "[aws]\nmultipart_threshold = 8M\nverify_tls = no\n");
    setenv("CANOPY_BATCH_SIZE", "9", 1);
    setenv("CANOPY_DETECTOR_SCORE_THRESHOLD", "0.5", 1);
    CHECK(cnp_config_load(&cfg, path, &err) == CNP_OK);
    CHECK(cfg.batch.size == 9); /* environment over file */
    CHECK(cfg.binarize.method == CNP_BIN_ADAPTIVE);
    CHECK(cfg.aws.multipart_threshold == 8LL << 20);
    CHECK(!cfg.aws.verify_tls);
    CHECK(cfg.detector.score_threshold == 0.5);
    CHECK(cnp_config_set(&cfg, "batch", "size", "11", &err) == CNP_OK); /* flag over both */
    CHECK(cfg.batch.size == 11);
    unsetenv("CANOPY_BATCH_SIZE");
    unsetenv("CANOPY_DETECTOR_SCORE_THRESHOLD");

    setenv("CANOPY_BATCH_SIZE", "lots", 1);
    CHECK(cnp_config_load(&cfg, NULL, &err) == CNP_ERR_CONFIG);
    CHECK_MSG(strstr(err.msg, "CANOPY_BATCH_SIZE") && strstr(err.msg, "lots"), "%s", err.msg);
    unsetenv("CANOPY_BATCH_SIZE");
}

/* Where each value came from: default, file:line, variable, command line;
 * and a misspelt variable of a known section is an error naming the key. */
static void test_origins(void)
{
    cnp_config cfg;
    cnp_err err;
    const char *path = write_ini("o.ini", "; comment\n[batch]\nsize = 7\n\nthreads = 3\n");
    setenv("CANOPY_BATCH_WAIT_SECONDS", "4", 1);
    CHECK(cnp_config_load(&cfg, path, &err) == CNP_OK, "%s", err.msg);
    CHECK(cnp_config_set(&cfg, "batch", "threads", "5", &err) == CNP_OK);
    unsetenv("CANOPY_BATCH_WAIT_SECONDS");
    char want[600];
    snprintf(want, sizeof want, "; size: %s:3\nsize = 7\n", path);
    char buf[16384] = "";
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    cnp_config_dump_origins(&cfg, f);
    fclose(f);
    CHECK(strstr(buf, want) != NULL, "no '%s' in:\n%s", want, buf);
    CHECK(strstr(buf, "; wait_seconds: CANOPY_BATCH_WAIT_SECONDS\nwait_seconds = 4\n") != NULL);
    CHECK(strstr(buf, "; threads: command line\nthreads = 5\n") != NULL);
    CHECK(strstr(buf, "; visibility_timeout: default\nvisibility_timeout = 300\n") != NULL);

    setenv("CANOPY_BATCH_SIZEE", "3", 1);
    CHECK(cnp_config_load(&cfg, NULL, &err) == CNP_ERR_CONFIG);
    CHECK(strstr(err.msg, "CANOPY_BATCH_SIZEE") && strstr(err.msg, "did you mean CANOPY_BATCH_SIZE?"),
          "%s", err.msg);
    unsetenv("CANOPY_BATCH_SIZEE");
    /* A misspelt section with a key of the section it is near: an error
     * naming the variable meant (before: silently ignored). */
    setenv("CANOPY_BACTH_SIZE", "3", 1);
    CHECK(cnp_config_load(&cfg, NULL, &err) == CNP_ERR_CONFIG);
    CHECK(strcmp(err.msg, "CANOPY_BACTH_SIZE: there is no section [bacth] (did you mean "
                          "CANOPY_BATCH_SIZE?)") == 0,
          "%s", err.msg);
    unsetenv("CANOPY_BACTH_SIZE");
    /* Not configuration: a variable of no known section is left alone, and
     * so is one near a section but with none of its keys (CANOPY_PG_OS_USER
     * is two edits from [log]). */
    setenv("CANOPY_STACK_DIR", "/tmp/x", 1);
    setenv("CANOPY_PG_OS_USER", "postgres", 1);
    setenv("CANOPY_NEON_DIR", "/tmp/x", 1);
    CHECK(cnp_config_load(&cfg, NULL, &err) == CNP_OK, "%s", err.msg);
    unsetenv("CANOPY_STACK_DIR");
    unsetenv("CANOPY_PG_OS_USER");
    unsetenv("CANOPY_NEON_DIR");

    /* --set (cnp_config_set) names the likely key or section as well. */
    cnp_config_defaults(&cfg);
    CHECK(cnp_config_set(&cfg, "batch", "sise", "3", &err) == CNP_ERR_CONFIG);
    CHECK(strcmp(err.msg, "unknown key 'sise' in section [batch] (did you mean 'size'?)") == 0,
          "%s", err.msg);
    CHECK(cnp_config_set(&cfg, "detecter", "model", "x.cnw", &err) == CNP_ERR_CONFIG);
    CHECK(strcmp(err.msg, "unknown section [detecter] (did you mean [detector]?)") == 0, "%s",
          err.msg);
    CHECK(cnp_config_set(&cfg, "zzzzzzzz", "model", "x.cnw", &err) == CNP_ERR_CONFIG);
    CHECK(strcmp(err.msg, "unknown section [zzzzzzzz]") == 0, "%s", err.msg);
}

static void expect_error(const char *text, const char *line, const char *reason)
{
    cnp_config cfg;
    cnp_err err;
    const char *path = write_ini("bad.ini", text);
    CHECK(cnp_config_load(&cfg, path, &err) == CNP_ERR_CONFIG);
    char where[600];
    snprintf(where, sizeof where, "%s:%s: ", path, line);
    CHECK_MSG(strncmp(err.msg, where, strlen(where)) == 0, "'%s' does not start with '%s'",
              err.msg, where);
    CHECK_MSG(strstr(err.msg, reason) != NULL, "'%s' lacks '%s'", err.msg, reason);
}

static void test_errors(void)
{
    expect_error("[batch]\nsize = 3\nsise = 4\n", "3",
                 "unknown key 'sise' in section [batch] (did you mean 'size'?)");
    expect_error("[bacth]\nsize = 3\n", "2", "unknown section [bacth] (did you mean [batch]?)");
    expect_error("[output]\nqueue_ulr = x\n", "2", "(did you mean 'queue_url'?)");
    expect_error("; c\n[batch]\n\nsize = ten\n", "4", "not an integer");
    expect_error("[batch]\nsize = 0\n", "2", "out of range");
    expect_error("[binarize]\nmethod = sauvola\n", "2", "not one of otsu, fixed, adaptive");
    expect_error("[aws]\nverify_tls = maybe\n", "2", "not a boolean");
    expect_error("[batch]\nthis line is wrong\n", "2", "syntax error");
    /* An unterminated header is the error, not the keys inih files under the
     * previous section after it ("unknown section []" before the fix). */
    expect_error("[batch\nsize = 4\n", "1", "malformed section header '[batch'");
    expect_error("[batch]\nsize = 4\n\n[output \nbucket = b\n", "4",
                 "malformed section header '[output'");
    expect_error("size = 4\n[batch]\n", "1", "key 'size' comes before any [section]");
    cnp_config cfg;
    cnp_err err;
    CHECK(cnp_config_load(&cfg, "/nonexistent/canopy.ini", &err) == CNP_ERR_CONFIG);
    CHECK_MSG(strstr(err.msg, "/nonexistent/canopy.ini") != NULL, "%s", err.msg);
}

/* An STS session token (often over 1,000 characters) or a long connection
 * string in the file: Debian's inih takes lines of 200 bytes at most, and
 * such a line was a "syntax error" on the line after it. */
static void test_long_lines(void)
{
    char token[1501], conn[401], text[2400];
    for (int i = 0; i < 1500; i++)
        token[i] = (char)('A' + i % 26);
    token[1500] = '\0';
    snprintf(conn, sizeof conn, "host=db.example dbname=canopy user=worker password=");
    for (size_t i = strlen(conn); i < 400; i++)
        conn[i] = 'p';
    conn[400] = '\0';
    snprintf(text, sizeof text, "[aws]\nsession_token = %s  \n[postgres]\nconninfo=%s\n"
             "[batch]\nsize = 9\n", token, conn);
    cnp_config cfg;
    cnp_err err;
    const char *path = write_ini("long.ini", text);
    CHECK(cnp_config_load(&cfg, path, &err) == CNP_OK, "%s", err.msg);
    CHECK(strcmp(cfg.aws.session_token, token) == 0);
    CHECK(strcmp(cfg.postgres.conninfo, conn) == 0);
    CHECK(cfg.batch.size == 9);
    /* Line numbers still count physical lines after a long one. */
    snprintf(text, sizeof text, "[aws]\nsession_token = %s\n[batch]\nsize = x\n", token);
    expect_error(text, "4", "not an integer");
}

/* Indentation: inih takes an indented line as the continuation of the
 * previous value, so `  size = 3` under `region = x` became part of the
 * region, and a dumped file did not read back the same (found by
 * fuzz_config). Indented keys are keys; an indented stray value is an error
 * naming its line. */
static void test_indentation(void)
{
    cnp_config cfg;
    cnp_err err;
    const char *path = write_ini("indent.ini",
                                 "[aws]\n  region = eu-west-1\n\t; a comment\n"
                                 "[batch]\n    size = 3\n  [output]\n  png_level = 6\n");
    CHECK(cnp_config_load(&cfg, path, &err) == CNP_OK, "%s", err.msg);
    CHECK_MSG(strcmp(cfg.aws.region, "eu-west-1") == 0, "region '%s'", cfg.aws.region);
    CHECK(cfg.batch.size == 3);
    CHECK(cfg.output.png_level == 6);
    expect_error("[aws]\nregion = eu- \n 10 ; inline cbug\n", "3", "syntax error");
}

/* The reader stands a long `key = value` line in for inih as "key = \x01N";
 * a file's own \x01 must not reach a stored long value (found by fuzz_config:
 * region took the text of a long comment line), and a long comment is a
 * comment, not a "line too long". */
static void test_control_characters(void)
{
    char text[1200], comment[400];
    memset(comment, 'c', sizeof comment - 1);
    comment[0] = ';';
    comment[sizeof comment - 1] = '\0';
    snprintf(text, sizeof text, "%s = x\n[aws]\nregion = \x01" "0\n", comment);
    expect_error(text, "3", "control character 0x01");
    expect_error("[aws]\nregion = a\x02\n", "2", "control character 0x02");
    cnp_config cfg;
    cnp_err err;
    snprintf(text, sizeof text, "%s\n[batch]\nsize = 5\n", comment);
    const char *path = write_ini("comment.ini", text);
    CHECK(cnp_config_load(&cfg, path, &err) == CNP_OK, "a long comment: %s", err.msg);
    CHECK(cfg.batch.size == 5);
    /* Inline comments mean the same on short and long lines, and "=;" is a
     * comment as "= ;" is: what the dump writes reads back the same (found
     * by fuzz_config: "region =;..." became "region = ;...", then empty). */
    snprintf(text, sizeof text, "[aws]\nregion =;%s\nendpoint_url = http://x:1 ; %s\n"
             "profile = p;q\n", comment, comment);
    path = write_ini("inline.ini", text);
    CHECK(cnp_config_load(&cfg, path, &err) == CNP_OK, "%s", err.msg);
    CHECK(cfg.aws.region[0] == '\0', "region '%.40s'", cfg.aws.region);
    CHECK(strcmp(cfg.aws.endpoint_url, "http://x:1") == 0, "endpoint '%.40s'",
          cfg.aws.endpoint_url);
    CHECK(strcmp(cfg.aws.profile, "p;q") == 0, "profile '%s'", cfg.aws.profile);
}

static void test_secrets_masked(void)
{
    cnp_config cfg;
    cnp_err err;
    cnp_config_defaults(&cfg);
    CHECK(cnp_config_set(&cfg, "aws", "secret_access_key", "SUPERSECRETVALUE", &err) == CNP_OK);
    char dump[32768] = "";
    FILE *m = fmemopen(dump, sizeof dump - 1, "w");
    cnp_config_dump(&cfg, m);
    fclose(m);
    CHECK(strstr(dump, "SUPERSECRETVALUE") == NULL);
    CHECK(strstr(dump, "secret_access_key = ********") != NULL);

    /* Passwords inside [postgres] conninfo, in both of libpq's forms. */
    static const char *const cases[][2] = {
        {"host=db user=u password=pw1 dbname=t", "host=db user=u password=******** dbname=t"},
        {"password = 'a b\\' c' host=db", "password = ******** host=db"},
        {"host=db sslpassword=k3y PASSWORD=x", "host=db sslpassword=******** PASSWORD=********"},
        {"host=db password='unterminated", "host=db password=********"},
        {"host=db user=u", "host=db user=u"},
        {"", ""},
        {"postgresql://u:pw2@db:5432/t?sslmode=require&password=pw3",
         "postgresql://u:********@db:5432/t?sslmode=require&password=********"},
        {"postgres://u@db/t", "postgres://u@db/t"},
        {"postgresql://db/t?password=pw4", "postgresql://db/t?password=********"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[512];
        cnp_conninfo_mask(cases[i][0], out, sizeof out);
        CHECK_MSG(strcmp(out, cases[i][1]) == 0, "'%s' -> '%s'", cases[i][0], out);
    }
    char tiny[8];
    cnp_conninfo_mask("password=secret123", tiny, sizeof tiny);
    CHECK(strlen(tiny) < sizeof tiny && strstr("password=********", tiny) != NULL);
    CHECK(cnp_config_set(&cfg, "postgres", "conninfo", "host=db password=PGSECRET", &err) ==
          CNP_OK);
    m = fmemopen(dump, sizeof dump - 1, "w");
    cnp_config_dump(&cfg, m);
    fclose(m);
    CHECK(strstr(dump, "PGSECRET") == NULL);
    CHECK(strstr(dump, "conninfo = host=db password=********") != NULL);
}

extern char **environ;

/* The test compares loaded values with the defaults: settings inherited from
 * the caller (CANOPY_OPENCL_CACHE_DIR from scripts/test.sh, say) must go. */
static void clear_canopy_env(void)
{
    char name[256];
    for (;;) {
        char **e = environ;
        while (*e && strncmp(*e, "CANOPY_", 7) != 0)
            e++;
        if (!*e)
            return;
        size_t n = strcspn(*e, "=");
        snprintf(name, sizeof name, "%.*s", (int)n, *e);
        unsetenv(name);
    }
}

/* [output] vector: a comma-separated set of formats, or none; the default
 * keeps today's outputs (GeoJSON only); the dump writes it back. */
static void test_vector_set(void)
{
    cnp_config cfg;
    cnp_err err;
    cnp_config_defaults(&cfg);
    CHECK(cfg.output.vector == CNP_VECTOR_GEOJSON);
    CHECK(cnp_config_set(&cfg, "output", "vector", "csv, GPKG,geojson", &err) == CNP_OK);
    CHECK(cfg.output.vector == (CNP_VECTOR_GEOJSON | CNP_VECTOR_GPKG | CNP_VECTOR_CSV));
    CHECK(cnp_config_set(&cfg, "output", "vector", "none", &err) == CNP_OK);
    CHECK(cfg.output.vector == 0);
    CHECK(cnp_config_set(&cfg, "output", "vector", "gpkg,shp", &err) != CNP_OK);
    CHECK(strstr(err.msg, "'shp' is not one of geojson, gpkg, csv"), "%s", err.msg);
    CHECK(cfg.output.vector == 0); /* a refused value changes nothing */
    CHECK(cnp_config_set(&cfg, "output", "vector", "csv,gpkg", &err) == CNP_OK);
    char dump[32768] = "";
    FILE *f = fmemopen(dump, sizeof dump - 1, "w");
    cnp_config_dump(&cfg, f);
    fclose(f);
    CHECK(strstr(dump, "\nvector = gpkg,csv\n"), "%s", dump);
}

int main(void)
{
    clear_canopy_env();
    if (!mkdtemp(g_dir))
        return 1;
    test_defaults_match_shipped_file();
    test_file_env_flags();
    test_origins();
    test_errors();
    test_long_lines();
    test_indentation();
    test_control_characters();
    test_secrets_masked();
    test_vector_set();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0)
        return 1;
    return TEST_RESULT();
}
