/* kg_fault.h - a fault in a shared mapping becomes an error, not a crash.
 *
 * A file mapped with mmap that another process truncates (to 0 bytes, or to
 * just its header) makes every access past the new end raise SIGBUS, which
 * kills the process. The ring cannot prevent the truncation (any process of
 * the same user can do it), so every stretch of code that touches a mapping
 * runs under a guard: a SIGBUS at an address inside the guarded ranges, in
 * the thread that set the guard, jumps back to the guard (siglongjmp) and the
 * caller reports "the ring was truncated". Any other SIGBUS goes to the
 * handler that was there before (Python's faulthandler, or the default
 * action), so real crashes are still reported as they were.
 *
 *     kg_fault_guard g;
 *     kg_fault_begin(&g, map_a, len_a, map_b, len_b);
 *     if (KG_FAULT_SETJMP(&g)) { ...the mapping faulted: g.addr; the guard has ended... }
 *     ...read or write the mappings...
 *     kg_fault_end(&g);
 *
 * Rules: the code between begin and end takes no lock and allocates nothing
 * (it may be abandoned at any point); locals it changes and that the fault
 * path reads must be volatile. kg_fault_install() is called before the first
 * guard (kg_reader_open and kg_writer_create do it); calling it again puts
 * the handler back in front if someone (faulthandler.enable()) took the
 * signal since. POSIX only: on Windows a mapped file cannot be truncated
 * (ERROR_USER_MAPPED_FILE), so the guard is a no-op there.
 * No Python in here.
 */
#ifndef KG_FAULT_H
#define KG_FAULT_H

#include <stddef.h>
#include <stdint.h>

#define KG_FAULT_RANGES 2

#if defined(_WIN32)

typedef struct kg_fault_guard {
    void *addr;
} kg_fault_guard;
static inline int kg_fault_install(void) { return 0; }
static inline void kg_fault_begin(kg_fault_guard *g, const void *a, size_t alen, const void *b, size_t blen) {
    (void)a, (void)alen, (void)b, (void)blen;
    g->addr = NULL;
}
static inline void kg_fault_end(kg_fault_guard *g) { (void)g; }
#define KG_FAULT_SETJMP(g) 0
static inline int kg_fault_file_size(intptr_t handle, uint64_t *size) { (void)handle, (void)size; return -1; }

#else

#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE) && !defined(__APPLE__)
#error "kg_fault.h: #define _POSIX_C_SOURCE 200809L before the first #include (sigsetjmp)"
#endif
#include <setjmp.h>

typedef struct kg_fault_guard {
    sigjmp_buf env;
    struct kg_fault_guard *prev; /* guards nest */
    const char *lo[KG_FAULT_RANGES], *hi[KG_FAULT_RANGES];
    void *volatile addr;         /* out: the address that faulted */
} kg_fault_guard;

/* Install the SIGBUS handler (once per process; again if another handler was
 * put in front of it since). 0 on success, -1 if sigaction failed. */
int kg_fault_install(void);
/* Guard [a, a+alen) and [b, b+blen) (either may be NULL/0) in this thread. */
void kg_fault_begin(kg_fault_guard *g, const void *a, size_t alen, const void *b, size_t blen);
/* sigsetjmp must run in the caller's frame, hence a macro: 0 now, 1 after a fault.
 * The signal mask is not saved: the handler runs with SA_NODEFER, so leaving
 * it by siglongjmp leaves SIGBUS unblocked. */
#define KG_FAULT_SETJMP(g) sigsetjmp((g)->env, 0)
void kg_fault_end(kg_fault_guard *g);
/* The current size of the file behind an open descriptor: 0 and *size, or -1. */
int kg_fault_file_size(intptr_t handle, uint64_t *size);

#endif

#endif
