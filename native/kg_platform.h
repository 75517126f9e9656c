/* kg_platform.h - everything the ring needs from the operating system, in one
 * small interface: clocks, the CPU pause, a cross-process wait/wake on a
 * 32-bit word, files (create, map, lock, identity) and their safety checks.
 *
 * kg_platform_posix.c implements it for Linux and macOS (shared futex on Linux;
 * timed back-off on macOS, whose shared os_sync_wait_on_address needs 14.4+),
 * kg_platform_win32.c for Windows (CreateFileMapping/MapViewOfFile, LockFileEx,
 * back-off: WaitOnAddress is process-private). No Python in here.
 */
#ifndef KG_PLATFORM_H
#define KG_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

#include "kg_status.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
static inline void kg_cpu_relax(void) { _mm_pause(); }
#elif defined(__aarch64__) || defined(_M_ARM64)
static inline void kg_cpu_relax(void) { __asm__ __volatile__("yield" ::: "memory"); }
#else
#error "kg_platform.h: add this CPU's spin-wait hint"
#endif

/* Clocks. kg_mono_ns is CLOCK_MONOTONIC on Linux/macOS (the clock the spec's
 * publish_mono_ns and heartbeat_mono_ns use, comparable across processes) and
 * QueryPerformanceCounter in ns on Windows. */
uint64_t kg_mono_ns(void);
uint64_t kg_unix_ns(void);
void kg_sleep_ns(uint64_t ns);
void kg_yield(void);
uint32_t kg_getpid(void);
/* CPU time this thread has used, ns (for the bench's CPU figures). */
uint64_t kg_thread_cpu_ns(void);

/* Wait on a 32-bit word shared between processes. Returns at once if *word
 * != expected; otherwise sleeps until woken or timeout_ns passes (spurious
 * returns allowed: the caller re-checks). KG_HAVE_SHARED_FUTEX says whether
 * this is a real kernel wait; without it the caller backs off instead. */
#if defined(__linux__)
#define KG_HAVE_SHARED_FUTEX 1
#else
#define KG_HAVE_SHARED_FUTEX 0
#endif
void kg_futex_wait(uint32_t *word, uint32_t expected, uint64_t timeout_ns);
void kg_futex_wake_all(uint32_t *word);

/* A file's identity: (device, inode) on POSIX, (volume serial, file index) on
 * Windows. Equal identities mean the same file. */
typedef struct kg_file_id {
    uint64_t dev;
    uint64_t ino;
} kg_file_id;

typedef struct kg_mapping {
    void *base;
    size_t length;
    kg_file_id id;
    intptr_t handle;  /* fd on POSIX, mapping HANDLE on Windows */
} kg_mapping;

/* The directory of `path` exists (created 0700 if missing) and is safe. */
kg_status kg_dir_prepare(const char *path, char *err, size_t errlen);
/* Take the writer's exclusive lock on `lock_path` (never blocks). *lock_handle
 * is released by kg_lock_release, or by the kernel when the process dies. */
kg_status kg_lock_acquire(const char *lock_path, intptr_t *lock_handle, char *err, size_t errlen);
void kg_lock_release(intptr_t lock_handle);
/* Create `tmp_path` (0600, exclusive), size it, map it read-write. */
kg_status kg_map_create(const char *tmp_path, size_t length, kg_mapping *m, char *err, size_t errlen);
/* Atomically put tmp_path at final_path (rename over). */
kg_status kg_publish_file(const char *tmp_path, const char *final_path, char *err, size_t errlen);
void kg_remove_file(const char *path);
/* Open `path` for a reader after every file-level health check of the spec:
 * a regular file (not a link), owned by this user, no group/other bits, its
 * directory not group/other writable. Maps the first `header_len` bytes
 * read-write and reports the file size; kg_map_slots then maps the rest. */
kg_status kg_map_open_checked(const char *path, size_t header_len, uint64_t *file_size, kg_mapping *m,
                              char *err, size_t errlen);
/* Map the whole file (opened by kg_map_open_checked) read-only beside the
 * header mapping; the header mapping stays the only writable one. */
kg_status kg_map_whole_readonly(kg_mapping *header, size_t length, kg_mapping *whole, char *err, size_t errlen);
/* The same checks as kg_map_open_checked, but opened O_RDONLY and the whole
 * file (at least min_len bytes) mapped PROT_READ: for a ring this process must
 * never write (the Shield's v1 ring). */
kg_status kg_map_open_readonly(const char *path, size_t min_len, uint64_t *file_size, kg_mapping *m,
                               char *err, size_t errlen);
void kg_unmap(kg_mapping *m);
/* Identity of whatever is at `path` now (without following a link). */
kg_status kg_path_identity(const char *path, kg_file_id *id);

#endif
