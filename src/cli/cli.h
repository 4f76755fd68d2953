/* Helpers shared by the subcommands: configuration loading with flag
 * overrides, and the usual messages. */
#ifndef CANOPY_CLI_CLI_H
#define CANOPY_CLI_CLI_H

#include "canopy/config.h"

#define CLI_MAX_SETS 64

/* Flags that override configuration keys, collected while parsing argv and
 * applied after the file and environment. */
typedef struct cli_overrides {
    const char *section[CLI_MAX_SETS];
    const char *key[CLI_MAX_SETS];
    const char *value[CLI_MAX_SETS];
    char *owned[CLI_MAX_SETS]; /* storage of --set SECTION.KEY=VALUE */
    int n;
} cli_overrides;

/* Records one override; returns 0, or 2 (usage) when too many. */
int cli_override(cli_overrides *o, const char *section, const char *key, const char *value);
/* Parses "section.key=value" (the --set flag). Returns 0, or 2 on bad syntax. */
int cli_override_set(cli_overrides *o, const char *assignment);
void cli_overrides_free(cli_overrides *o);

/* Loads the configuration (path may be NULL), then applies the overrides and
 * the [log] settings. Prints "canopy CMD: file:line: reason" and returns 2 on
 * a configuration error, else 0. */
int cli_config_load(const char *cmd, const char *path, cli_overrides *o, cnp_config *cfg);

#endif
