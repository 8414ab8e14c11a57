#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tsr_cl_internal.h"

const char *tsr_status_str(tsr_status s)
{
    switch (s) {
    case TSR_OK: return "ok";
    case TSR_ERR_INVALID_ARG: return "invalid argument";
    case TSR_ERR_IO: return "I/O error";
    case TSR_ERR_FORMAT: return "bad file format";
    case TSR_ERR_NOMEM: return "out of memory";
    case TSR_ERR_UNSUPPORTED: return "unsupported";
    case TSR_ERR_NO_DEVICE: return "no OpenCL device";
    case TSR_ERR_OPENCL: return "OpenCL error";
    case TSR_ERR_SHAPE: return "shape mismatch";
    case TSR_ERR_TOO_LARGE: return "too large";
    case TSR_ERR_CLBLAST: return "CLBlast error";
    }
    return "unknown status";
}

tsr_status tsr_error_set(tsr_error *err, tsr_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

void tsr_error_prefix(tsr_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    char pre[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t n = strlen(pre);
    if (n > sizeof err->msg - 3)
        n = sizeof err->msg - 3;
    memcpy(err->msg, pre, n);
    memcpy(err->msg + n, ": ", 2);
    size_t rest = sizeof err->msg - n - 3;
    strncpy(err->msg + n + 2, old, rest);
    err->msg[sizeof err->msg - 1] = 0;
}

const char *tsr_cl_errstr(cl_int e)
{
    switch (e) {
#define E(x) case x: return #x;
        E(CL_SUCCESS) E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE)
        E(CL_COMPILER_NOT_AVAILABLE) E(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        E(CL_OUT_OF_RESOURCES) E(CL_OUT_OF_HOST_MEMORY) E(CL_BUILD_PROGRAM_FAILURE)
        E(CL_INVALID_VALUE) E(CL_INVALID_PLATFORM) E(CL_INVALID_DEVICE) E(CL_INVALID_CONTEXT)
        E(CL_INVALID_COMMAND_QUEUE) E(CL_INVALID_MEM_OBJECT) E(CL_INVALID_BINARY)
        E(CL_INVALID_BUILD_OPTIONS) E(CL_INVALID_PROGRAM) E(CL_INVALID_KERNEL_NAME)
        E(CL_INVALID_KERNEL) E(CL_INVALID_ARG_INDEX) E(CL_INVALID_ARG_VALUE)
        E(CL_INVALID_ARG_SIZE) E(CL_INVALID_KERNEL_ARGS) E(CL_INVALID_WORK_DIMENSION)
        E(CL_INVALID_WORK_GROUP_SIZE) E(CL_INVALID_WORK_ITEM_SIZE)
        E(CL_INVALID_GLOBAL_OFFSET) E(CL_INVALID_BUFFER_SIZE) E(CL_PLATFORM_NOT_FOUND_KHR)
#undef E
    }
    return "unknown OpenCL error";
}

tsr_status tsr_cl_fail(tsr_error *err, cl_int e, const char *what)
{
    tsr_status code = (e == CL_MEM_OBJECT_ALLOCATION_FAILURE || e == CL_OUT_OF_RESOURCES ||
                       e == CL_OUT_OF_HOST_MEMORY || e == CL_INVALID_BUFFER_SIZE)
                          ? TSR_ERR_NOMEM
                          : TSR_ERR_OPENCL;
    return tsr_error_set(err, code, "%s failed: %s (%d)", what, tsr_cl_errstr(e), (int)e);
}
