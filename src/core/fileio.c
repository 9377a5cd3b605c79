/* Whole-file reads, atomic writes (temporary name, fsync, rename) and CRC32. */
#define _POSIX_C_SOURCE 200809L
#include "lmscale/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

lms_status lms_fopen_regular(const char *path, FILE **out) {
    *out = NULL;
    /* O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return lms_errorf(LMS_ERR_IO, "cannot open '%s': %s (check the path and its permissions)", path,
                          strerror(errno));
    struct stat sb;
    memset(&sb, 0, sizeof sb);
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return lms_errorf(LMS_ERR_IO, "'%s' is not a regular file (%s): give the path of a file", path,
                          S_ISDIR(sb.st_mode) ? "a directory" : S_ISFIFO(sb.st_mode) ? "a FIFO"
                          : S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "a device" : "not a plain file");
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        return lms_errorf(LMS_ERR_IO, "cannot read '%s': %s", path, strerror(e));
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        return lms_errorf(LMS_ERR_IO, "cannot open '%s': %s", path, strerror(e));
    }
    *out = f;
    return LMS_OK;
}

lms_status lms_read_file(const char *path, unsigned char **data, size_t *size) {
    *data = NULL;
    *size = 0;
    FILE *f;
    LMS_CHECK(lms_fopen_regular(path, &f));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || sb.st_size < 0 || (uint64_t)sb.st_size > SIZE_MAX - 1) {
        fclose(f);
        return lms_errorf(LMS_ERR_IO, "cannot read '%s': its size is unknown or too large", path);
    }
    size_t n = (size_t)sb.st_size;
    unsigned char *buf = malloc(n + 1); /* + a NUL after the data, for text parsers */
    if (!buf) {
        fclose(f);
        return lms_errorf(LMS_ERR_OOM, "cannot allocate %zu bytes to read '%s'", n, path);
    }
    if (n && fread(buf, 1, n, f) != n) {
        int e = errno;
        free(buf);
        fclose(f);
        return lms_errorf(LMS_ERR_IO, "cannot read '%s': %s", path, e ? strerror(e) : "short read");
    }
    fclose(f);
    buf[n] = 0;
    *data = buf;
    *size = n;
    return LMS_OK;
}

lms_status lms_atomic_open(lms_atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path);
    af->path = malloc(n + 1);
    af->tmp_path = malloc(n + 32);
    if (!af->path || !af->tmp_path) {
        free(af->path);
        free(af->tmp_path);
        return lms_errorf(LMS_ERR_OOM, "out of memory opening '%s'", path);
    }
    memcpy(af->path, path, n + 1);
    snprintf(af->tmp_path, n + 32, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp_path, "wb");
    if (!af->f) {
        lms_status s = lms_errorf(LMS_ERR_IO, "cannot create '%s': %s (check that the directory exists "
                                  "and is writable)", af->tmp_path, strerror(errno));
        free(af->path);
        free(af->tmp_path);
        memset(af, 0, sizeof *af);
        return s;
    }
    return LMS_OK;
}

lms_status lms_atomic_write(lms_atomic_file *af, const void *data, size_t n) {
    if (n && fwrite(data, 1, n, af->f) != n)
        return lms_errorf(LMS_ERR_IO, "cannot write '%s': %s (disk full?)", af->tmp_path,
                          strerror(errno));
    return LMS_OK;
}

void lms_atomic_abort(lms_atomic_file *af) {
    if (af->f) fclose(af->f);
    if (af->tmp_path) unlink(af->tmp_path);
    free(af->path);
    free(af->tmp_path);
    memset(af, 0, sizeof *af);
}

lms_status lms_atomic_commit(lms_atomic_file *af) {
    lms_status s = LMS_OK;
    if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0)
        s = lms_errorf(LMS_ERR_IO, "cannot flush '%s': %s (disk full?)", af->tmp_path, strerror(errno));
    if (s == LMS_OK) {
        int rc = fclose(af->f);
        af->f = NULL;
        if (rc != 0)
            s = lms_errorf(LMS_ERR_IO, "cannot close '%s': %s", af->tmp_path, strerror(errno));
    }
    if (s == LMS_OK && rename(af->tmp_path, af->path) != 0)
        s = lms_errorf(LMS_ERR_IO, "cannot rename '%s' to '%s': %s", af->tmp_path, af->path,
                       strerror(errno));
    if (s != LMS_OK) {
        lms_atomic_abort(af);
        return s;
    }
    free(af->path);
    free(af->tmp_path);
    memset(af, 0, sizeof *af);
    return LMS_OK;
}

/* mkdir -p */
lms_status lms_mkdirs(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n >= sizeof buf) return lms_errorf(LMS_ERR_INVALID_ARG, "path too long: '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return lms_errorf(LMS_ERR_IO, "cannot create directory '%s': %s (check the path and its "
                                  "permissions)", buf, strerror(errno));
            buf[i] = c;
        }
    }
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return lms_errorf(LMS_ERR_IO, "'%s' exists and is not a directory (give a directory path)", path);
    return LMS_OK;
}

uint32_t lms_crc32(uint32_t crc, const void *data, size_t n) {
    /* table-driven CRC-32 (IEEE); the table is rebuilt per call on the stack
     * (256 entries, negligible next to the buffers this is used on). */
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
        table[i] = c;
    }
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
    return ~crc;
}
