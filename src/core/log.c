/* Logging: one line per call, rank-aware (only rank 0 prints info unless
 * all_ranks is set; warnings and errors print on every rank). */
#include "lmscale/core.h"

#include <stdarg.h>
#include <stdio.h>

void lms_log(const lms_logger *lg, lms_log_level lvl, const char *fmt, ...) {
    if (lvl > lg->level) return;
    if (lvl >= LMS_LOG_INFO && lg->rank != 0 && !lg->all_ranks) return;
    FILE *out = lvl <= LMS_LOG_WARN ? stderr : (lg->out ? lg->out : stdout);
    if (lvl == LMS_LOG_WARN) fprintf(out, "warning: ");
    if (lvl == LMS_LOG_ERROR) fprintf(out, "error: ");
    if (lg->all_ranks) fprintf(out, "[rank %d] ", lg->rank);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fputc('\n', out);
    fflush(out);
}
