/* An output that may outgrow memory: its bytes are held in a buffer up to a
 * limit, then written through to a temporary file, so that a large raster's
 * outputs (120 MB of GeoJSON at 20k x 20k) are never held whole. The sinks
 * move the file into place (rename) or upload it from the file.
 *
 * A zeroed spool is valid: empty and memory-only (limit 0). */
#ifndef CANOPY_SPOOL_H
#define CANOPY_SPOOL_H

#include <stdbool.h>
#include <stdint.h>

#include "canopy/buf.h"
#include "canopy/status.h"

typedef struct cnp_spool {
    cnp_buf buf;          /* in memory: every byte; in a file: those not written yet */
    uint64_t limit;       /* past this many bytes the spool moves to a file; 0: never */
    const char *dir;      /* the file's directory (not owned); NULL: $TMPDIR or /tmp */
    int fd;               /* the file, while path[0] */
    char path[4096];      /* the temporary file; "" while in memory */
    uint64_t in_file;     /* bytes written to the file */
} cnp_spool;

/* An empty spool that moves to a file in dir (NULL: $TMPDIR or /tmp) once
 * it holds more than limit bytes (0: stays in memory). */
void cnp_spool_init(cnp_spool *s, const char *dir, uint64_t limit);
cnp_status cnp_spool_write(cnp_spool *s, const void *data, size_t len, cnp_err *err);
cnp_status cnp_spool_printf(cnp_spool *s, cnp_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Writes what is still buffered to the file (no-op in memory): call it once
 * the content is complete, before reading the file. */
cnp_status cnp_spool_flush(cnp_spool *s, cnp_err *err);
/* Total bytes of the content. */
uint64_t cnp_spool_size(const cnp_spool *s);
static inline bool cnp_spool_in_file(const cnp_spool *s) { return s->path[0] != '\0'; }

/* A fresh temporary file name in the spool's directory for a writer that
 * makes its own files (GDAL), created empty so no one else takes it; give
 * it back with cnp_spool_adopt, or unlink it. */
cnp_status cnp_spool_temp_name(const cnp_spool *s, const char *suffix, char *path, size_t size,
                               cnp_err *err);
/* Makes the file at path (complete, closed by its writer) the spool's whole
 * content, replacing what the spool held; the spool removes it when freed. */
cnp_status cnp_spool_adopt(cnp_spool *s, const char *path, cnp_err *err);

/* Puts the content at dest atomically: the file renamed there (copied when
 * dest is on another file system), or the buffer written. The spool is
 * then empty. */
cnp_status cnp_spool_save(cnp_spool *s, const char *dest, cnp_err *err);
/* Frees the buffer and removes the file; the spool is empty and keeps its
 * directory and limit. Accepts NULL. */
void cnp_spool_free(cnp_spool *s);

#endif
