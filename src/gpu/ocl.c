/* OpenCL runtime: device selection and listing, the context, error names,
 * buffers with their accounting and kernel launches. Program builds and the
 * binary cache are in ocl_program.c; the context struct both use is in
 * ocl_internal.h. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>

#include "canopy/cache.h"
#include "canopy/gpu.h"
#include "canopy/log.h"
#include "gpu/ocl_internal.h"
#include "gpu/tune.h"

const char *ocl_error_name(cl_int code)
{
    switch (code) {
#define E(x) case x: return #x
    E(CL_SUCCESS);
    E(CL_DEVICE_NOT_FOUND);
    E(CL_DEVICE_NOT_AVAILABLE);
    E(CL_COMPILER_NOT_AVAILABLE);
    E(CL_MEM_OBJECT_ALLOCATION_FAILURE);
    E(CL_OUT_OF_RESOURCES);
    E(CL_OUT_OF_HOST_MEMORY);
    E(CL_PROFILING_INFO_NOT_AVAILABLE);
    E(CL_MEM_COPY_OVERLAP);
    E(CL_IMAGE_FORMAT_MISMATCH);
    E(CL_IMAGE_FORMAT_NOT_SUPPORTED);
    E(CL_BUILD_PROGRAM_FAILURE);
    E(CL_MAP_FAILURE);
    E(CL_MISALIGNED_SUB_BUFFER_OFFSET);
    E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST);
    E(CL_COMPILE_PROGRAM_FAILURE);
    E(CL_LINKER_NOT_AVAILABLE);
    E(CL_LINK_PROGRAM_FAILURE);
    E(CL_DEVICE_PARTITION_FAILED);
    E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE);
    E(CL_INVALID_VALUE);
    E(CL_INVALID_DEVICE_TYPE);
    E(CL_INVALID_PLATFORM);
    E(CL_INVALID_DEVICE);
    E(CL_INVALID_CONTEXT);
    E(CL_INVALID_QUEUE_PROPERTIES);
    E(CL_INVALID_COMMAND_QUEUE);
    E(CL_INVALID_HOST_PTR);
    E(CL_INVALID_MEM_OBJECT);
    E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR);
    E(CL_INVALID_IMAGE_SIZE);
    E(CL_INVALID_SAMPLER);
    E(CL_INVALID_BINARY);
    E(CL_INVALID_BUILD_OPTIONS);
    E(CL_INVALID_PROGRAM);
    E(CL_INVALID_PROGRAM_EXECUTABLE);
    E(CL_INVALID_KERNEL_NAME);
    E(CL_INVALID_KERNEL_DEFINITION);
    E(CL_INVALID_KERNEL);
    E(CL_INVALID_ARG_INDEX);
    E(CL_INVALID_ARG_VALUE);
    E(CL_INVALID_ARG_SIZE);
    E(CL_INVALID_KERNEL_ARGS);
    E(CL_INVALID_WORK_DIMENSION);
    E(CL_INVALID_WORK_GROUP_SIZE);
    E(CL_INVALID_WORK_ITEM_SIZE);
    E(CL_INVALID_GLOBAL_OFFSET);
    E(CL_INVALID_EVENT_WAIT_LIST);
    E(CL_INVALID_EVENT);
    E(CL_INVALID_OPERATION);
    E(CL_INVALID_GL_OBJECT);
    E(CL_INVALID_BUFFER_SIZE);
    E(CL_INVALID_MIP_LEVEL);
    E(CL_INVALID_GLOBAL_WORK_SIZE);
    E(CL_INVALID_PROPERTY);
    E(CL_INVALID_IMAGE_DESCRIPTOR);
    E(CL_INVALID_COMPILER_OPTIONS);
    E(CL_INVALID_LINKER_OPTIONS);
    E(CL_INVALID_DEVICE_PARTITION_COUNT);
#undef E
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    }
    return "CL_UNKNOWN_ERROR";
}

/* The limit the last refused buffer of this thread exceeded (ocl_check). */
static _Thread_local struct {
    bool set;
    uint64_t bytes, limit;
    const char *name;
} t_refused;

cnp_status ocl_check(cl_int code, const char *what, cnp_err *err)
{
    if (code == CL_SUCCESS)
        return CNP_OK;
    if (code == CL_INVALID_BUFFER_SIZE && t_refused.set) {
        t_refused.set = false;
        cnp_err_set(err, "%s: needs %llu bytes, more than the device's %s of %llu bytes",
                    what, (unsigned long long)t_refused.bytes, t_refused.name,
                    (unsigned long long)t_refused.limit);
        return CNP_ERR_LIMIT;
    }
    cnp_err_set(err, "%s: %s (%d)", what, ocl_error_name(code), code);
    return CNP_ERR_OPENCL;
}

static void str_info_platform(cl_platform_id p, cl_platform_info what, char *out, size_t len)
{
    out[0] = '\0';
    if (clGetPlatformInfo(p, what, len, out, NULL) != CL_SUCCESS)
        snprintf(out, len, "?");
    out[len - 1] = '\0';
}

static void str_info_device(cl_device_id d, cl_device_info what, char *out, size_t len)
{
    out[0] = '\0';
    if (clGetDeviceInfo(d, what, len, out, NULL) != CL_SUCCESS)
        snprintf(out, len, "?");
    out[len - 1] = '\0';
}

/* A selector matches when it is empty, equals the index, or is a
 * case-insensitive substring of the name. */
static bool selector_matches(const char *sel, unsigned index, const char *name)
{
    if (!sel[0])
        return true;
    char *end;
    long n = strtol(sel, &end, 10);
    if (*end == '\0' && end != sel)
        return n == (long)index;
    size_t sl = strlen(sel);
    for (const char *p = name; *p; p++)
        if (strncasecmp(p, sel, sl) == 0)
            return true;
    return false;
}

#define MAX_PLATFORMS 16
#define MAX_DEVICES 64

/* Lists the platforms (at most MAX_PLATFORMS); an ICD loader with none is an
 * error that says where drivers are registered and what to install. */
static cnp_status platforms_get(cl_platform_id *plats, cl_uint *np, cnp_err *err)
{
    cl_int rc = clGetPlatformIDs(MAX_PLATFORMS, plats, np);
    if (rc == -1001 || (rc == CL_SUCCESS && *np == 0)) {
        const char *vendors = getenv("OCL_ICD_VENDORS");
        cnp_err_set(err,
                    "no OpenCL platform found: the OpenCL ICD loader has no driver registered "
                    "in %s. Install one: pocl-opencl-icd (any CPU; Debian/Ubuntu), the NVIDIA "
                    "driver's OpenCL ICD (nvidia-opencl-icd, or libnvidia-compute-<version>), "
                    "intel-opencl-icd or mesa-opencl-icd; `clinfo -l` then lists it",
                    vendors && vendors[0] ? vendors : "/etc/OpenCL/vendors (*.icd)");
        return CNP_ERR_OPENCL;
    }
    if (ocl_check(rc, "clGetPlatformIDs", err) != CNP_OK)
        return CNP_ERR_OPENCL;
    if (*np > MAX_PLATFORMS)
        *np = MAX_PLATFORMS;
    return CNP_OK;
}

/* Lists a platform's devices (at most MAX_DEVICES); 0 when it has none. */
static cl_uint devices_get(cl_platform_id plat, cl_device_id *devs)
{
    cl_uint nd = 0;
    if (clGetDeviceIDs(plat, CL_DEVICE_TYPE_ALL, MAX_DEVICES, devs, &nd) != CL_SUCCESS)
        return 0;
    return nd > MAX_DEVICES ? MAX_DEVICES : nd;
}

/* Appends printf-style text to the NUL-terminated out, truncating quietly. */
static void __attribute__((format(printf, 3, 4))) str_append(char *out, size_t len,
                                                             const char *fmt, ...)
{
    size_t used = strlen(out);
    if (used + 1 >= len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out + used, len - used, fmt, ap);
    va_end(ap);
}

/* Finds the device: selectors first; with no device selector, a GPU wins over
 * other types, else the first matching device. When none matches, the error
 * lists what was searched (platform and device indices and names) and how to
 * select one. */
static cnp_status pick_device(const cnp_opencl_config *cfg, cl_platform_id *plat_out,
                              cl_device_id *dev_out, cnp_err *err)
{
    cl_platform_id plats[MAX_PLATFORMS];
    cl_uint np = 0;
    if (platforms_get(plats, &np, err) != CNP_OK)
        return CNP_ERR_OPENCL;
    bool found = false;
    bool found_gpu = false;
    char seen[640] = "";
    for (cl_uint pi = 0; pi < np && !found_gpu; pi++) {
        char pname[256];
        str_info_platform(plats[pi], CL_PLATFORM_NAME, pname, sizeof pname);
        bool plat_ok = selector_matches(cfg->platform, pi, pname);
        str_append(seen, sizeof seen, "%splatform %u '%s'%s", pi ? "; " : "", pi, pname,
                   plat_ok ? "" : " (not selected)");
        if (!plat_ok)
            continue;
        cl_device_id devs[MAX_DEVICES];
        cl_uint nd = devices_get(plats[pi], devs);
        if (nd == 0)
            str_append(seen, sizeof seen, " with no device");
        for (cl_uint di = 0; di < nd; di++) {
            char dname[256];
            cl_device_type type = 0;
            str_info_device(devs[di], CL_DEVICE_NAME, dname, sizeof dname);
            clGetDeviceInfo(devs[di], CL_DEVICE_TYPE, sizeof type, &type, NULL);
            str_append(seen, sizeof seen, "%s device %u '%s'", di ? "," : ":", di, dname);
            if (!selector_matches(cfg->device, di, dname))
                continue;
            bool gpu = (type & CL_DEVICE_TYPE_GPU) != 0;
            if (!found || (gpu && !found_gpu && !cfg->device[0])) {
                *plat_out = plats[pi];
                *dev_out = devs[di];
                found = true;
                found_gpu = gpu;
            }
            if (cfg->device[0] || found_gpu)
                break;
        }
        if (found && cfg->device[0])
            break;
    }
    if (!found) {
        cnp_err_set(err,
                    "no OpenCL device matches [opencl] platform = '%s', device = '%s' "
                    "(CANOPY_OPENCL_PLATFORM / CANOPY_OPENCL_DEVICE); found %s. Set them to a "
                    "name substring or an index from this list, or leave both empty for the "
                    "first GPU (else the first device)",
                    cfg->platform, cfg->device, seen);
        return CNP_ERR_OPENCL;
    }
    return CNP_OK;
}

cnp_status ocl_ctx_create(const cnp_opencl_config *cfg, ocl_ctx **out, cnp_err *err)
{
    cnp_status result;
    cl_int rc;
    *out = NULL;
    ocl_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        cnp_err_set(err, "out of memory");
        return CNP_ERR_NOMEM;
    }
    pthread_mutex_init(&ctx->lock, NULL);
    if ((result = pick_device(cfg, &ctx->platform, &ctx->device, err)) != CNP_OK)
        goto fail;

    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)ctx->platform, 0};
    ctx->context = clCreateContext(props, 1, &ctx->device, NULL, NULL, &rc);
    if ((result = ocl_check(rc, "clCreateContext", err)) != CNP_OK)
        goto fail;
    /* Profiling only where events are timed (CLBlast's tuners): it costs
     * every launch something on some drivers. */
    ctx->queue = clCreateCommandQueue(ctx->context, ctx->device,
                                      cfg->queue_profiling ? CL_QUEUE_PROFILING_ENABLE : 0, &rc);
    if ((result = ocl_check(rc, "clCreateCommandQueue", err)) != CNP_OK)
        goto fail;

    char pname[256];
    str_info_platform(ctx->platform, CL_PLATFORM_NAME, pname, sizeof pname);
    str_info_device(ctx->device, CL_DEVICE_NAME, ctx->device_name, sizeof ctx->device_name);
    str_info_device(ctx->device, CL_DRIVER_VERSION, ctx->driver, sizeof ctx->driver);
    snprintf(ctx->description, sizeof ctx->description, "%s (%s, driver %s)", ctx->device_name,
             pname, ctx->driver);
    clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof ctx->max_work_group,
                    &ctx->max_work_group, NULL);
    cl_device_fp_config fp = 0;
    ctx->fp32_cr_divide =
        clGetDeviceInfo(ctx->device, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL) ==
            CL_SUCCESS &&
        (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT);
    clGetDeviceInfo(ctx->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof ctx->local_mem,
                    &ctx->local_mem, NULL);

    cnp_cache_dir(cfg->cache_dir, ctx->cache_dir, sizeof ctx->cache_dir);
    snprintf(ctx->kernel_dir, sizeof ctx->kernel_dir, "%s", cfg->kernel_dir);
    LOG_DEBUG("gpu", "device: %s", ctx->description);
    if ((result = ocl_tuning_apply_configured(ctx, cfg->tuning_file, ctx->tuning,
                                              sizeof ctx->tuning, err)) != CNP_OK)
        goto fail;
    *out = ctx;
    return CNP_OK;
fail:
    ocl_ctx_free(ctx);
    return result;
}

void ocl_ctx_free(ocl_ctx *ctx)
{
    if (!ctx)
        return;
    for (int i = 0; i < ctx->nprograms; i++) {
        clReleaseProgram(ctx->programs[i].program);
        free(ctx->programs[i].name);
        free(ctx->programs[i].options);
    }
    free(ctx->programs);
    if (ctx->queue)
        clReleaseCommandQueue(ctx->queue);
    if (ctx->context)
        clReleaseContext(ctx->context);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
}

cl_context ocl_ctx_context(const ocl_ctx *ctx) { return ctx->context; }
cl_device_id ocl_ctx_device(const ocl_ctx *ctx) { return ctx->device; }
cl_command_queue ocl_ctx_queue(const ocl_ctx *ctx) { return ctx->queue; }
const char *ocl_ctx_description(const ocl_ctx *ctx) { return ctx->description; }
const char *ocl_ctx_device_name(const ocl_ctx *ctx) { return ctx->device_name; }
const char *ocl_ctx_driver(const ocl_ctx *ctx) { return ctx->driver; }
const char *ocl_ctx_tuning(const ocl_ctx *ctx) { return ctx->tuning; }
size_t ocl_ctx_max_work_group(const ocl_ctx *ctx) { return ctx->max_work_group; }
bool ocl_ctx_fp32_correctly_rounded(const ocl_ctx *ctx) { return ctx->fp32_cr_divide; }
cl_ulong ocl_ctx_local_mem(const ocl_ctx *ctx) { return ctx->local_mem; }

static const char *device_type_name(cl_device_type t)
{
    if (t & CL_DEVICE_TYPE_GPU) return "GPU";
    if (t & CL_DEVICE_TYPE_CPU) return "CPU";
    if (t & CL_DEVICE_TYPE_ACCELERATOR) return "accelerator";
    return "other";
}

cnp_status ocl_list_devices(FILE *out, cnp_err *err)
{
    cl_platform_id plats[MAX_PLATFORMS];
    cl_uint np = 0;
    if (platforms_get(plats, &np, err) != CNP_OK)
        return CNP_ERR_OPENCL;
    for (cl_uint pi = 0; pi < np; pi++) {
        char name[256], vendor[256], version[256];
        str_info_platform(plats[pi], CL_PLATFORM_NAME, name, sizeof name);
        str_info_platform(plats[pi], CL_PLATFORM_VENDOR, vendor, sizeof vendor);
        str_info_platform(plats[pi], CL_PLATFORM_VERSION, version, sizeof version);
        fprintf(out, "platform %u: %s (%s, %s)\n", pi, name, vendor, version);
        cl_device_id devs[MAX_DEVICES];
        cl_uint nd = devices_get(plats[pi], devs);
        for (cl_uint di = 0; di < nd; di++) {
            char dname[256], driver[128], dver[128];
            cl_device_type type = 0;
            cl_ulong gmem = 0, lmem = 0, maxalloc = 0;
            cl_uint cus = 0, mhz = 0;
            size_t wg = 0;
            str_info_device(devs[di], CL_DEVICE_NAME, dname, sizeof dname);
            str_info_device(devs[di], CL_DRIVER_VERSION, driver, sizeof driver);
            str_info_device(devs[di], CL_DEVICE_VERSION, dver, sizeof dver);
            clGetDeviceInfo(devs[di], CL_DEVICE_TYPE, sizeof type, &type, NULL);
            clGetDeviceInfo(devs[di], CL_DEVICE_GLOBAL_MEM_SIZE, sizeof gmem, &gmem, NULL);
            clGetDeviceInfo(devs[di], CL_DEVICE_LOCAL_MEM_SIZE, sizeof lmem, &lmem, NULL);
            clGetDeviceInfo(devs[di], CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof maxalloc, &maxalloc, NULL);
            clGetDeviceInfo(devs[di], CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cus, &cus, NULL);
            clGetDeviceInfo(devs[di], CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof mhz, &mhz, NULL);
            clGetDeviceInfo(devs[di], CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
            fprintf(out,
                    "  device %u: %s [%s]\n"
                    "    %s, driver %s\n"
                    "    compute units %u @ %u MHz, global memory %.1f GiB (max alloc %.1f GiB), "
                    "local memory %llu KiB, max work-group %zu\n",
                    di, dname, device_type_name(type), dver, driver, cus, mhz,
                    (double)gmem / (1 << 30), (double)maxalloc / (1 << 30),
                    (unsigned long long)(lmem >> 10), wg);
        }
    }
    return CNP_OK;
}

static _Atomic size_t g_device_bytes, g_device_peak;
static _Atomic uint64_t g_max_buffer_override;


void ocl_set_max_buffer_bytes(uint64_t bytes)
{
    atomic_store(&g_max_buffer_override, bytes);
}

/* The device of context c's limits (the first device: canopy makes one
 * context per device); false when it cannot be asked. */
static bool device_limits(cl_context c, cl_ulong *maxalloc, cl_ulong *gmem)
{
    cl_device_id devs[8];
    size_t got = 0;
    if (clGetContextInfo(c, CL_CONTEXT_DEVICES, sizeof devs, devs, &got) != CL_SUCCESS ||
        got < sizeof devs[0])
        return false;
    return clGetDeviceInfo(devs[0], CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof *maxalloc, maxalloc,
                           NULL) == CL_SUCCESS &&
           clGetDeviceInfo(devs[0], CL_DEVICE_GLOBAL_MEM_SIZE, sizeof *gmem, gmem, NULL) ==
               CL_SUCCESS;
}

/* Which limit `bytes` exceeds on c's device; NULL when it fits (or the
 * device cannot be asked: then clCreateBuffer decides). */
static const char *buffer_limit(cl_context c, uint64_t bytes, uint64_t *limit)
{
    uint64_t over = atomic_load(&g_max_buffer_override);
    if (over && bytes > over) {
        *limit = over;
        return "CL_DEVICE_MAX_MEM_ALLOC_SIZE (lowered by ocl_set_max_buffer_bytes)";
    }
    cl_ulong maxalloc = 0, gmem = 0;
    if (!device_limits(c, &maxalloc, &gmem))
        return NULL;
    if (maxalloc && bytes > maxalloc) {
        *limit = maxalloc;
        return "CL_DEVICE_MAX_MEM_ALLOC_SIZE";
    }
    if (gmem && bytes > gmem) {
        *limit = gmem;
        return "CL_DEVICE_GLOBAL_MEM_SIZE";
    }
    return NULL;
}

uint64_t ocl_max_buffer_bytes(cl_context c)
{
    cl_ulong maxalloc = 0, gmem = 0;
    uint64_t m = device_limits(c, &maxalloc, &gmem) ? (maxalloc < gmem ? maxalloc : gmem) : 0;
    uint64_t over = atomic_load(&g_max_buffer_override);
    if (over && (m == 0 || over < m))
        m = over;
    return m;
}

cl_mem ocl_buffer_create(cl_context c, cl_mem_flags flags, size_t bytes, void *host,
                         cl_int *rc)
{
    uint64_t limit = 0;
    const char *name = buffer_limit(c, bytes, &limit);
    if (name) {
        t_refused.set = true;
        t_refused.bytes = bytes;
        t_refused.limit = limit;
        t_refused.name = name;
        *rc = CL_INVALID_BUFFER_SIZE;
        return NULL;
    }
    cl_mem m = clCreateBuffer(c, flags, bytes, host, rc);
    if (m && *rc == CL_SUCCESS) {
        size_t now = atomic_fetch_add(&g_device_bytes, bytes) + bytes;
        size_t peak = atomic_load(&g_device_peak);
        while (now > peak && !atomic_compare_exchange_weak(&g_device_peak, &peak, now))
            ;
    }
    return m;
}

void ocl_buffer_release(cl_mem m)
{
    if (!m)
        return;
    size_t bytes = 0;
    if (clGetMemObjectInfo(m, CL_MEM_SIZE, sizeof bytes, &bytes, NULL) == CL_SUCCESS)
        atomic_fetch_sub(&g_device_bytes, bytes);
    clReleaseMemObject(m);
}

size_t ocl_device_bytes(void)
{
    return atomic_load(&g_device_bytes);
}

size_t ocl_device_peak_bytes(void)
{
    return atomic_load(&g_device_peak);
}

cnp_status ocl_set_args(cl_kernel k, const char *name, const ocl_arg *args, size_t n,
                        cnp_err *err)
{
    for (size_t i = 0; i < n; i++) {
        cl_int rc = clSetKernelArg(k, (cl_uint)i, args[i].size, args[i].value);
        if (rc != CL_SUCCESS) {
            char what[96];
            snprintf(what, sizeof what, "clSetKernelArg(%s, %zu)", name, i);
            return ocl_check(rc, what, err);
        }
    }
    return CNP_OK;
}

cnp_status ocl_enqueue(cl_command_queue q, cl_kernel k, cl_uint dims, const size_t *global,
                       const size_t *local, const char *what, cnp_err *err)
{
    for (cl_uint d = 0; d < dims; d++)
        if (global[d] == 0)
            return CNP_OK;
    if (local) {
        /* The device's maximum is not the kernel's: registers and local
         * memory can lower a kernel's own limit (CL_KERNEL_WORK_GROUP_SIZE),
         * and a reqd_work_group_size above it cannot run at all. */
        size_t items = 1, kwg = 0;
        for (cl_uint d = 0; d < dims; d++)
            items *= local[d];
        cl_device_id dev;
        if (clGetCommandQueueInfo(q, CL_QUEUE_DEVICE, sizeof dev, &dev, NULL) == CL_SUCCESS &&
            clGetKernelWorkGroupInfo(k, dev, CL_KERNEL_WORK_GROUP_SIZE, sizeof kwg, &kwg, NULL) ==
                CL_SUCCESS &&
            kwg && items > kwg) {
            cnp_err_set(err, "%s: a work-group of %zu items exceeds this kernel's "
                             "CL_KERNEL_WORK_GROUP_SIZE of %zu on this device",
                        what, items, kwg);
            return CNP_ERR_OPENCL;
        }
    }
    return ocl_check(clEnqueueNDRangeKernel(q, k, dims, NULL, global, local, 0, NULL, NULL),
                     what, err);
}
