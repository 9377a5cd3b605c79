/* Status names and the per-thread last-error message (like errno/dlerror:
 * the one piece of thread-local state, so that every layer can attach a
 * readable message to the status it returns). */
#include "lmscale/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char lms_err_buf[2048];

const char *lms_status_str(lms_status s) {
    switch (s) {
    case LMS_OK: return "ok";
    case LMS_ERR_INVALID_ARG: return "invalid argument";
    case LMS_ERR_IO: return "I/O error";
    case LMS_ERR_FORMAT: return "bad format";
    case LMS_ERR_OOM: return "out of memory";
    case LMS_ERR_UNSUPPORTED: return "unsupported";
    case LMS_ERR_NUMERIC: return "numerical error";
    case LMS_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

lms_status lms_errorf(lms_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(lms_err_buf, sizeof lms_err_buf, fmt, ap);
    va_end(ap);
    return s;
}

lms_status lms_error_context(lms_status s, const char *fmt, ...) {
    char prefix[512], old[sizeof lms_err_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, lms_err_buf, sizeof old);
    size_t np = strlen(prefix), room = sizeof lms_err_buf - 1;
    if (np > room - 2) np = room - 2;
    memcpy(lms_err_buf, prefix, np);
    memcpy(lms_err_buf + np, ": ", 2);
    size_t no = strlen(old);
    if (no > room - np - 2) no = room - np - 2;
    memcpy(lms_err_buf + np + 2, old, no);
    lms_err_buf[np + 2 + no] = 0;
    return s;
}

const char *lms_last_error(void) { return lms_err_buf[0] ? lms_err_buf : "(no message)"; }
void lms_clear_error(void) { lms_err_buf[0] = 0; }

void lms_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "lmscale: internal error: assertion '%s' failed at %s:%d (please report this)\n",
            expr, file, line);
    abort();
}
