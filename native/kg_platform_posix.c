/* kg_platform_posix.c - kg_platform.h for Linux and macOS. */
#if !defined(_WIN32)

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#include "kg_platform.h"

#define FAIL(status, ...)                          \
    do {                                           \
        if (err && errlen) snprintf(err, errlen, __VA_ARGS__); \
        return (status);                           \
    } while (0)

uint64_t kg_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t kg_unix_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void kg_sleep_ns(uint64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void kg_yield(void) { sched_yield(); }

uint32_t kg_getpid(void) { return (uint32_t)getpid(); }

uint64_t kg_thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#if defined(__linux__)
/* A shared (not FUTEX_PRIVATE) futex: the word lives in a file mapped by
 * several processes, so the kernel must key the wait on the file page. */
void kg_futex_wait(uint32_t *word, uint32_t expected, uint64_t timeout_ns) {
    struct timespec ts = {(time_t)(timeout_ns / 1000000000ull), (long)(timeout_ns % 1000000000ull)};
    syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, NULL, 0);
}

void kg_futex_wake_all(uint32_t *word) { syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0); }
#else
/* macOS: no cross-process futex before macOS 14.4 (os_sync_wait_on_address
 * with OS_SYNC_WAIT_ON_ADDRESS_SHARED). The reader's wait backs off with
 * sleeps instead (kg_wait.c), so these are a short sleep and a no-op. */
void kg_futex_wait(uint32_t *word, uint32_t expected, uint64_t timeout_ns) {
    (void)word;
    (void)expected;
    kg_sleep_ns(timeout_ns < 1000000ull ? timeout_ns : 1000000ull);
}

void kg_futex_wake_all(uint32_t *word) { (void)word; }
#endif

/* A mapping of `length` bytes at `base` of the open file `fd` (identified by `st`). */
static void set_mapping(kg_mapping *m, void *base, size_t length, const struct stat *st, int fd) {
    m->base = base;
    m->length = length;
    m->id.dev = (uint64_t)st->st_dev;
    m->id.ino = (uint64_t)st->st_ino;
    m->handle = fd;
}

static void dir_of(const char *path, char *dir, size_t len) {
    snprintf(dir, len, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = 0;
    else if (slash) *slash = 0;
    else snprintf(dir, len, ".");
}

kg_status kg_dir_prepare(const char *path, char *err, size_t errlen) {
    char dir[PATH_MAX];
    dir_of(path, dir, sizeof dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) FAIL(KG_IO, "cannot create directory %s: %s", dir, strerror(errno));
    struct stat st;
    if (lstat(dir, &st) != 0) FAIL(KG_IO, "cannot stat directory %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) FAIL(KG_UNSAFE_DIR, "%s is not a directory", dir);
    if (st.st_mode & 022) FAIL(KG_UNSAFE_DIR, "directory %s has mode %04o", dir, (unsigned)(st.st_mode & 07777));
    if (st.st_uid != geteuid()) FAIL(KG_UNSAFE_DIR, "directory %s is owned by uid %u", dir, (unsigned)st.st_uid);
    return KG_OK;
}

kg_status kg_lock_acquire(const char *lock_path, intptr_t *lock_handle, char *err, size_t errlen) {
    int fd = open(lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) FAIL(KG_IO, "cannot open lock %s: %s", lock_path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK) FAIL(KG_LOCKED, "lock %s is held by a running writer", lock_path);
        FAIL(KG_IO, "cannot lock %s: %s", lock_path, strerror(e));
    }
    *lock_handle = fd;
    return KG_OK;
}

void kg_lock_release(intptr_t lock_handle) {
    if (lock_handle >= 0) close((int)lock_handle); /* closing drops the flock */
}

kg_status kg_map_create(const char *tmp_path, size_t length, kg_mapping *m, char *err, size_t errlen) {
    unlink(tmp_path); /* a leftover of a writer with our pid that died */
    int fd = open(tmp_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) FAIL(KG_IO, "cannot create %s: %s", tmp_path, strerror(errno));
    if (ftruncate(fd, (off_t)length) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp_path);
        FAIL(KG_IO, "cannot size %s to %zu bytes: %s", tmp_path, length, strerror(e));
    }
    void *base = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        int e = errno;
        close(fd);
        unlink(tmp_path);
        FAIL(KG_IO, "cannot map %s: %s", tmp_path, strerror(e));
    }
    struct stat st;
    fstat(fd, &st);
    set_mapping(m, base, length, &st, fd);
    return KG_OK;
}

kg_status kg_publish_file(const char *tmp_path, const char *final_path, char *err, size_t errlen) {
    if (rename(tmp_path, final_path) != 0) FAIL(KG_IO, "cannot rename %s to %s: %s", tmp_path, final_path, strerror(errno));
    return KG_OK;
}

void kg_remove_file(const char *path) { unlink(path); }

/* Every file-level check, then open (read-write or read-only) and map the
 * first `header_len` bytes (writable only if opened so). */
static kg_status open_checked(const char *path, size_t header_len, int writable, uint64_t *file_size,
                              kg_mapping *m, char *err, size_t errlen) {
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) FAIL(KG_NOT_FOUND, "%s does not exist", path);
        FAIL(KG_IO, "cannot stat %s: %s", path, strerror(errno));
    }
    if (S_ISLNK(st.st_mode)) FAIL(KG_NOT_REGULAR, "it is a symbolic link");
    if (!S_ISREG(st.st_mode)) FAIL(KG_NOT_REGULAR, "file type %o", (unsigned)(st.st_mode & S_IFMT) >> 12);
    char dir[PATH_MAX];
    dir_of(path, dir, sizeof dir);
    struct stat dst;
    if (stat(dir, &dst) != 0) FAIL(KG_IO, "cannot stat %s: %s", dir, strerror(errno));
    if (dst.st_mode & 022) FAIL(KG_UNSAFE_DIR, "%s has mode %04o", dir, (unsigned)(dst.st_mode & 07777));
    if (dst.st_uid != geteuid()) FAIL(KG_UNSAFE_DIR, "%s is owned by uid %u", dir, (unsigned)dst.st_uid);

    /* Owner and mode from lstat first: a file we may not open because it is
     * another user's is reported as such, not as a failed open. */
    if (st.st_uid != geteuid())
        FAIL(KG_WRONG_OWNER, "owner uid %u, you are uid %u", (unsigned)st.st_uid, (unsigned)geteuid());
    if (st.st_mode & 077) FAIL(KG_UNSAFE_MODE, "mode %04o", (unsigned)(st.st_mode & 07777));
    /* Open without following links, then check the opened file itself (fstat),
     * so a swap between lstat and open cannot slip another file in. */
    int fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ELOOP) FAIL(KG_NOT_REGULAR, "it is a symbolic link");
        if (errno == ENOENT) FAIL(KG_NOT_FOUND, "%s does not exist", path);
        FAIL(KG_IO, "cannot open %s: %s", path, strerror(errno));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        FAIL(KG_NOT_REGULAR, "not a regular file");
    }
    if (st.st_uid != geteuid()) {
        close(fd);
        FAIL(KG_WRONG_OWNER, "owner uid %u, you are uid %u", (unsigned)st.st_uid, (unsigned)geteuid());
    }
    if (st.st_mode & 077) {
        close(fd);
        FAIL(KG_UNSAFE_MODE, "mode %04o", (unsigned)(st.st_mode & 07777));
    }
    if ((uint64_t)st.st_size < header_len) {
        close(fd);
        FAIL(KG_BAD_SIZE, "file is %llu bytes, shorter than the %zu-byte header", (unsigned long long)st.st_size,
             header_len);
    }
    void *base = mmap(NULL, header_len, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        int e = errno;
        close(fd);
        FAIL(KG_IO, "cannot map %s: %s", path, strerror(e));
    }
    set_mapping(m, base, header_len, &st, fd);
    *file_size = (uint64_t)st.st_size;
    return KG_OK;
}

kg_status kg_map_open_checked(const char *path, size_t header_len, uint64_t *file_size, kg_mapping *m,
                              char *err, size_t errlen) {
    return open_checked(path, header_len, 1, file_size, m, err, errlen);
}

kg_status kg_map_open_readonly(const char *path, size_t min_len, uint64_t *file_size, kg_mapping *m,
                               char *err, size_t errlen) {
    kg_status st = open_checked(path, min_len, 0, file_size, m, err, errlen);
    if (st != KG_OK || *file_size == min_len) return st;
    void *whole = mmap(NULL, (size_t)*file_size, PROT_READ, MAP_SHARED, (int)m->handle, 0);
    if (whole == MAP_FAILED) {
        int e = errno;
        kg_unmap(m);
        FAIL(KG_IO, "cannot map %s: %s", path, strerror(e));
    }
    munmap(m->base, m->length);
    m->base = whole;
    m->length = (size_t)*file_size;
    return KG_OK;
}

kg_status kg_map_whole_readonly(kg_mapping *header, size_t length, kg_mapping *whole, char *err, size_t errlen) {
    void *base = mmap(NULL, length, PROT_READ, MAP_SHARED, (int)header->handle, 0);
    if (base == MAP_FAILED) FAIL(KG_IO, "cannot map %zu bytes: %s", length, strerror(errno));
    whole->base = base;
    whole->length = length;
    whole->id = header->id;
    whole->handle = -1; /* shares the header mapping's fd */
    return KG_OK;
}

void kg_unmap(kg_mapping *m) {
    if (m->base) munmap(m->base, m->length);
    if (m->handle >= 0) close((int)m->handle);
    m->base = NULL;
    m->handle = -1;
}

kg_status kg_path_identity(const char *path, kg_file_id *id) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? KG_NOT_FOUND : KG_IO;
    id->dev = (uint64_t)st.st_dev;
    id->ino = (uint64_t)st.st_ino;
    return KG_OK;
}

#endif
