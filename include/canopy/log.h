/* Logs through one sink: a level, the module, the function, text or JSON.
 *
 * Messages go to stderr. Secrets must never be passed to these functions;
 * cnp_log_redact() masks a value for debug output where one is unavoidable. */
#ifndef CANOPY_LOG_H
#define CANOPY_LOG_H

#include <stdbool.h>

enum cnp_log_level {
    CNP_LOG_DEBUG = 0,
    CNP_LOG_INFO = 1,
    CNP_LOG_WARN = 2,
    CNP_LOG_ERROR = 3,
};

void cnp_log_set_level(enum cnp_log_level level);
enum cnp_log_level cnp_log_get_level(void);
void cnp_log_set_json(bool json);
bool cnp_log_is_json(void);
/* Parses "debug" | "info" | "warn" | "error"; returns -1 when unknown. */
int cnp_log_level_parse(const char *name);

/* Calls before_line(ctx) under the log's lock before every line (NULL: none):
 * a terminal's live progress line clears itself there, so log lines never
 * glue onto it. */
void cnp_log_set_hook(void (*before_line)(void *ctx), void *ctx);
/* Runs fn(ctx) under the log's lock: output that must not interleave with
 * log lines (the live progress line). */
void cnp_log_locked(void (*fn)(void *ctx), void *ctx);
/* Writes one line as it is to the log stream (a CloudWatch EMF object). */
void cnp_log_raw(const char *line);

void cnp_log_write(enum cnp_log_level level, const char *module, const char *func,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define CNP_LOG(level, module, ...)                                                 \
    do {                                                                            \
        if ((level) >= cnp_log_get_level())                                         \
            cnp_log_write((level), (module), __func__, __VA_ARGS__);                \
    } while (0)
#define LOG_DEBUG(module, ...) CNP_LOG(CNP_LOG_DEBUG, module, __VA_ARGS__)
#define LOG_INFO(module, ...) CNP_LOG(CNP_LOG_INFO, module, __VA_ARGS__)
#define LOG_WARN(module, ...) CNP_LOG(CNP_LOG_WARN, module, __VA_ARGS__)
#define LOG_ERROR(module, ...) CNP_LOG(CNP_LOG_ERROR, module, __VA_ARGS__)

#endif
