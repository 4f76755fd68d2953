/* A reader of Hugging Face safetensors files: an 8-byte little-endian
 * header length, a JSON header naming each tensor's dtype, shape and
 * data_offsets [begin, end) relative to the first byte after the header,
 * then the tensor bytes. Every field is checked when the file is opened;
 * not part of the public API. */
#ifndef CANOPY_DETECT_SAFETENSORS_H
#define CANOPY_DETECT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "canopy/status.h"

#define ST_NAME_MAX 160
#define ST_MAX_DIMS 8

enum st_dtype {
    ST_F32 = 0,
    ST_F16,
    ST_BF16,
    ST_F64,
    ST_I64,
    ST_I32,
    ST_I16,
    ST_I8,
    ST_U8,
    ST_U16,
    ST_U32,
    ST_U64,
    ST_BOOL,
    ST_F8_E4M3,
    ST_F8_E5M2,
};

typedef struct st_tensor {
    char name[ST_NAME_MAX];
    enum st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t begin, end; /* in the data section */
} st_tensor;

typedef struct st_file st_file;

/* Reads and checks path: header length within the file, header JSON an
 * object of tensors (and an optional "__metadata__" of strings), known
 * dtypes, shapes of non-negative dims, byte size = product(shape) * dtype
 * size, offsets inside the data section, no two tensors overlapping and no
 * byte of the data section left unclaimed. A truncated file is refused
 * naming the file and the first tensor whose bytes are missing. */
cnp_status st_open(const char *path, st_file **out, cnp_err *err);

/* Frees the file; accepts NULL. */
void st_close(st_file *f);

/* The file's path as given to st_open. */
const char *st_path(const st_file *f);

/* Number of tensors and the i-th (header order). */
size_t st_count(const st_file *f);
const st_tensor *st_at(const st_file *f, size_t i);

/* The tensor named name, or NULL. */
const st_tensor *st_find(const st_file *f, const char *name);

/* A string of "__metadata__", or NULL. */
const char *st_metadata(const st_file *f, const char *key);

/* Converts a floating-point tensor (F32, F16, BF16, F64) to doubles into dst
 * (product of shape elements). Other dtypes are refused naming the tensor. */
cnp_status st_read_f64(const st_file *f, const st_tensor *t, double *dst, cnp_err *err);

/* Number of elements of t. */
uint64_t st_numel(const st_tensor *t);

/* The dtype's name as the header spells it ("F32"). */
const char *st_dtype_name(enum st_dtype d);

/* SHA-256 of the whole file, as 64 lowercase hex digits and a terminator. */
void st_sha256_hex(const st_file *f, char out[65]);

#endif
