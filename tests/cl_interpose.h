/* libOpenCL's own entry points for tests that inject failures by defining
 * clEnqueueWriteBuffer and the like themselves (the executable's
 * definition wins over libOpenCL's): each test_real_* is the next
 * definition after the executable's, looked up once, for the test's own
 * to forward to. Define _GNU_SOURCE before any include (RTLD_NEXT); link
 * ${CMAKE_DL_LIBS}. */
#ifndef CANOPY_TESTS_CL_INTERPOSE_H
#define CANOPY_TESTS_CL_INTERPOSE_H

#include <dlfcn.h>

#include <CL/cl.h>

typedef cl_int (*test_set_arg_fn)(cl_kernel, cl_uint, size_t, const void *);
typedef cl_int (*test_read_fn)(cl_command_queue, cl_mem, cl_bool, size_t, size_t, void *,
                               cl_uint, const cl_event *, cl_event *);
typedef cl_int (*test_write_fn)(cl_command_queue, cl_mem, cl_bool, size_t, size_t,
                                const void *, cl_uint, const cl_event *, cl_event *);
typedef cl_int (*test_fill_fn)(cl_command_queue, cl_mem, const void *, size_t, size_t, size_t,
                               cl_uint, const cl_event *, cl_event *);

/* Defines `getter`, returning libOpenCL's `name` as a `type`. */
#define TEST_REAL_CL(type, getter, name)                                                      \
    static inline type getter(void)                                                           \
    {                                                                                         \
        static type real;                                                                     \
        if (!real)                                                                            \
            *(void **)&real = dlsym(RTLD_NEXT, name);                                         \
        return real;                                                                          \
    }

TEST_REAL_CL(test_set_arg_fn, test_real_set_kernel_arg, "clSetKernelArg")
TEST_REAL_CL(test_read_fn, test_real_read_buffer, "clEnqueueReadBuffer")
TEST_REAL_CL(test_write_fn, test_real_write_buffer, "clEnqueueWriteBuffer")
TEST_REAL_CL(test_fill_fn, test_real_fill_buffer, "clEnqueueFillBuffer")

/* Defines clEnqueueFillBuffer as libOpenCL's, failing with
 * CL_OUT_OF_RESOURCES while the expression `failing` holds. */
#define TEST_FILL_BUFFER_FAILING_WHILE(failing)                                               \
    CL_API_ENTRY cl_int CL_API_CALL clEnqueueFillBuffer(                                      \
        cl_command_queue q, cl_mem buf, const void *pattern, size_t psize, size_t off,        \
        size_t size, cl_uint nwait, const cl_event *wait, cl_event *ev)                       \
    {                                                                                         \
        if (failing)                                                                          \
            return CL_OUT_OF_RESOURCES;                                                       \
        return test_real_fill_buffer()(q, buf, pattern, psize, off, size, nwait, wait, ev);   \
    }

#endif
