/* canopy config show: prints the effective configuration (defaults, then the
 * file, then CANOPY_<SECTION>_<KEY> environment variables, then flags) as INI,
 * with secrets masked, and where [detector] model resolves to. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "canopy/detect.h"
#include "cli/cli.h"
#include "cli/commands.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: canopy config show [-c FILE] [--set SECTION.KEY=VALUE]...\n\n"
            "Prints the configuration a command would run with: every key's default,\n"
            "overridden by FILE, then by CANOPY_<SECTION>_<KEY> environment variables,\n"
            "then by --set flags, as INI. Secrets are masked: [aws] access_key_id,\n"
            "secret_access_key and session_token, and any password or sslpassword in\n"
            "[postgres] conninfo. A last comment line says which file [detector] model\n"
            "resolves to. Exit 2 on a configuration error, as every command.\n");
}

int cmd_config(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    /* `canopy config show ...`; `canopy config ...` means the same. */
    if (argc > 1 && strcmp(argv[1], "show") == 0) {
        argc--;
        argv++;
    }
    const char *config = NULL;
    cli_overrides ov = {0};
    int c, rc = CNP_EXIT_OK;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1 && rc == CNP_EXIT_OK) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'S': rc = cli_override_set(&ov, optarg); break;
        case 'h': usage(stdout); goto out;
        default: rc = CNP_EXIT_USAGE; break;
        }
    }
    if (rc != CNP_EXIT_OK)
        goto out;
    if (optind < argc) {
        fprintf(stderr, "canopy config: unexpected argument '%s' (see canopy config --help)\n",
                argv[optind]);
        rc = CNP_EXIT_USAGE;
        goto out;
    }
    cnp_config cfg;
    if ((rc = cli_config_load("config", config, &ov, &cfg)) != CNP_EXIT_OK)
        goto out;
    printf("; canopy effective configuration: defaults < %s < CANOPY_* environment < flags\n"
           "; secrets masked\n\n",
           config ? config : "(no file)");
    cnp_config_dump_origins(&cfg, stdout);
    char path[CNP_STR_LONG + 512];
    cnp_err err = {{0}};
    if (det_model_resolve_path(cfg.detector.model, path, sizeof path, &err) == CNP_OK)
        printf("\n; [detector] model resolves to %s\n", path);
    else
        printf("\n; [detector] model: %s\n", err.msg);
out:
    cli_overrides_free(&ov);
    return rc;
}
