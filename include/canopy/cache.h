/* The on-disk cache shared by the engines: OpenCL program binaries and the
 * small files of measured choices (conv paths, CLBlast parameters), kept in
 * [opencl] cache_dir, else $XDG_CACHE_HOME/canopy/kernels, else
 * ~/.cache/canopy/kernels, else /tmp/canopy-kernels. Every file is a
 * cache: missing, unreadable or stale means build or measure again. */
#ifndef CANOPY_CACHE_H
#define CANOPY_CACHE_H

#include <stddef.h>

/* The cache directory: `configured` when not empty, else the default above. */
void cnp_cache_dir(const char *configured, char *out, size_t len);

/* Creates dir and its parents (mode 0755); existing ones are fine. Returns
 * 0, or -1 with errno set. */
int cnp_mkdir_p(const char *dir);

/* 16 hex digits (and a NUL) of SHA-256 over the NUL-terminated strings of
 * parts and len bytes of data: the key in a cache file's name. */
void cnp_cache_key(const char *const *parts, size_t nparts, const void *data, size_t len,
                   char hex[17]);

/* This machine's CPU as /proc/cpuinfo names it ("model name", else the
 * architecture), and its online cores: what CPU-side measurements are
 * keyed by. */
void cnp_cpu_identity(char *out, size_t len);

#endif
