/* Counters, gauges and histograms an operator scrapes or ships: the
 * Prometheus text format (for node-exporter's textfile collector, written
 * atomically) and CloudWatch embedded-metric-format JSON (for AWS Batch logs,
 * no agent needed). Thread-safe. Series are named by a metric of the table
 * in metrics.c and at most one label value. */
#ifndef CANOPY_METRICS_H
#define CANOPY_METRICS_H

#include "canopy/buf.h"
#include "canopy/status.h"

typedef struct cnp_metrics cnp_metrics;

cnp_status cnp_metrics_create(cnp_metrics **out, cnp_err *err);
void cnp_metrics_free(cnp_metrics *m);

/* Adds v to a counter; sets a gauge; records a histogram observation. An
 * unknown metric name is a programmer error (ignored, logged once). label
 * NULL: none. */
void cnp_metrics_add(cnp_metrics *m, const char *name, const char *label, double v);
void cnp_metrics_set(cnp_metrics *m, const char *name, const char *label, double v);
void cnp_metrics_observe(cnp_metrics *m, const char *name, const char *label, double v);

/* Current value of a counter or gauge series (0 when absent); tests. */
double cnp_metrics_get(cnp_metrics *m, const char *name, const char *label);

/* The Prometheus text exposition format (HELP, TYPE, series). */
cnp_status cnp_metrics_prometheus(cnp_metrics *m, cnp_buf *out);
/* Writes it to path through a temporary file in the same directory and a
 * rename, so a scraper never reads half a file. */
cnp_status cnp_metrics_write_textfile(cnp_metrics *m, const char *path, cnp_err *err);
/* One CloudWatch EMF JSON object (namespace "canopy", dimension mode):
 * counters and gauges as metrics (histograms as their sum and count), plus
 * the ts, level, module and msg fields of every JSON log line; caller
 * frees. */
char *cnp_metrics_emf(cnp_metrics *m, const char *mode);

#endif
