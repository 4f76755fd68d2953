/* Configuration loading and overrides shared by the subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"

int cli_override(cli_overrides *o, const char *section, const char *key, const char *value)
{
    if (o->n == CLI_MAX_SETS) {
        fprintf(stderr, "canopy: too many overriding flags (at most %d)\n", CLI_MAX_SETS);
        return CNP_EXIT_USAGE;
    }
    o->section[o->n] = section;
    o->key[o->n] = key;
    o->value[o->n] = value;
    o->owned[o->n] = NULL;
    o->n++;
    return CNP_EXIT_OK;
}

int cli_override_set(cli_overrides *o, const char *assignment)
{
    char *copy = strdup(assignment);
    char *dot = copy ? strchr(copy, '.') : NULL;
    char *eq = dot ? strchr(dot, '=') : NULL;
    if (!eq) {
        fprintf(stderr, "canopy: --set '%s': expected SECTION.KEY=VALUE\n", assignment);
        free(copy);
        return CNP_EXIT_USAGE;
    }
    *dot = '\0';
    *eq = '\0';
    int rc = cli_override(o, copy, dot + 1, eq + 1);
    if (rc == CNP_EXIT_OK)
        o->owned[o->n - 1] = copy;
    else
        free(copy);
    return rc;
}

void cli_overrides_free(cli_overrides *o)
{
    for (int i = 0; i < o->n; i++)
        free(o->owned[i]);
    o->n = 0;
}

int cli_config_load(const char *cmd, const char *path, cli_overrides *o, cnp_config *cfg)
{
    cnp_err err;
    if (cnp_config_load(cfg, path, &err) != CNP_OK) {
        fprintf(stderr, "canopy %s: %s\n", cmd, err.msg);
        return CNP_EXIT_USAGE;
    }
    for (int i = 0; o && i < o->n; i++) {
        if (cnp_config_set(cfg, o->section[i], o->key[i], o->value[i], &err) != CNP_OK) {
            fprintf(stderr, "canopy %s: flag: %s\n", cmd, err.msg);
            return CNP_EXIT_USAGE;
        }
    }
    cnp_config_apply_log(cfg);
    return CNP_EXIT_OK;
}
