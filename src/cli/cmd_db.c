/* `canopy db migrate|status`: the results database schema. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/config.h"
#include "canopy/store.h"
#include "cli/commands.h"

static void db_usage(FILE *out)
{
    fprintf(out,
            "usage: canopy db migrate [-c FILE] [--conninfo STR]\n"
            "       canopy db status  [-c FILE] [--conninfo STR]\n"
            "\n"
            "  migrate   apply pending schema migrations (safe to run concurrently;\n"
            "            drain and reprocess also do this on start)\n"
            "  status    print the schema version of the database and of this build\n"
            "\n"
            "  -c, --config FILE   configuration file (INI)\n"
            "  --conninfo STR      libpq connection string or URI; overrides\n"
            "                      [postgres] conninfo. Empty: PG* variables\n"
            "  -h, --help          this text\n"
            "\n"
            "Exit codes: 0 done, 1 database error, 2 usage or configuration error.\n");
}

/* Value of "--name VALUE" or "--name=VALUE" at argv[*i]; NULL if not that flag. */
static const char *flag_value(int argc, char **argv, int *i, const char *shortname,
                              const char *longname, bool *missing)
{
    const char *a = argv[*i];
    size_t n = strlen(longname);
    if (!strncmp(a, longname, n) && a[n] == '=')
        return a + n + 1;
    if ((shortname && !strcmp(a, shortname)) || !strcmp(a, longname)) {
        if (*i + 1 >= argc) {
            *missing = true;
            return NULL;
        }
        return argv[++*i];
    }
    return NULL;
}

int cmd_db(int argc, char **argv)
{
    const char *sub = NULL, *config_path = NULL, *conninfo = NULL;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        const char *v;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            db_usage(stdout);
            return CNP_EXIT_OK;
        } else if ((v = flag_value(argc, argv, &i, "-c", "--config", &missing))) {
            config_path = v;
        } else if ((v = flag_value(argc, argv, &i, NULL, "--conninfo", &missing))) {
            conninfo = v;
        } else if (missing) {
            fprintf(stderr, "canopy db: %s needs a value\n", argv[i]);
            return CNP_EXIT_USAGE;
        } else if (argv[i][0] == '-' || sub) {
            fprintf(stderr, "canopy db: unexpected argument '%s'\n", argv[i]);
            db_usage(stderr);
            return CNP_EXIT_USAGE;
        } else {
            sub = argv[i];
        }
    }
    if (!sub || (strcmp(sub, "migrate") && strcmp(sub, "status"))) {
        fprintf(stderr, "canopy db: %s\n", sub ? "unknown subcommand" : "missing subcommand");
        db_usage(stderr);
        return CNP_EXIT_USAGE;
    }

    cnp_err err = {{0}};
    cnp_config *cfg = malloc(sizeof *cfg);
    if (!cfg) {
        fprintf(stderr, "canopy db: out of memory\n");
        return CNP_EXIT_FATAL;
    }
    int code = CNP_EXIT_OK;
    pg_store *store = NULL;
    if (cnp_config_load(cfg, config_path, &err) != CNP_OK ||
        (conninfo && cnp_config_set(cfg, "postgres", "conninfo", conninfo, &err) != CNP_OK)) {
        fprintf(stderr, "canopy db: %s\n", err.msg);
        code = CNP_EXIT_USAGE;
        goto out;
    }
    cnp_config_apply_log(cfg);
    cnp_status st = pg_store_open_config(&cfg->postgres, &store, &err);
    if (st != CNP_OK) {
        fprintf(stderr, "canopy db: %s\n", err.msg);
        code = st == CNP_ERR_CONFIG ? CNP_EXIT_USAGE : CNP_EXIT_FATAL;
        goto out;
    }
    int version = 0, applied = 0;
    if (!strcmp(sub, "migrate")) {
        st = pg_store_migrate(store, &applied, &version, &err);
        if (st == CNP_OK)
            printf("schema version %d (%d migration%s applied)\n", version, applied,
                   applied == 1 ? "" : "s");
    } else {
        st = pg_store_schema_version(store, &version, &err);
        if (st == CNP_OK)
            printf("database schema version %d; this build %d%s\n", version,
                   pg_store_schema_latest(),
                   version < pg_store_schema_latest() ? " (run `canopy db migrate`)" : "");
    }
    if (st != CNP_OK) {
        fprintf(stderr, "canopy db %s: %s\n", sub, err.msg);
        code = CNP_EXIT_FATAL;
    }
out:
    pg_store_free(store);
    free(cfg);
    return code;
}
