/* kg_fault.c - the SIGBUS guard of kg_fault.h (POSIX). */
#if !defined(_WIN32)

#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

#include "kg_fault.h"

/* The innermost guard of this thread. initial-exec: the variable lives in the
 * static TLS block, so reading it in a signal handler never allocates (the
 * default model of a dlopen'ed module may call malloc on first use). */
#if defined(__linux__)
#define KG_TLS __thread __attribute__((tls_model("initial-exec")))
#else
#define KG_TLS __thread
#endif
static KG_TLS kg_fault_guard *current;
static KG_TLS int chaining; /* inside the previous handler: do not chain again */

static struct sigaction previous; /* what SIGBUS did before us */

static int in_guard(const kg_fault_guard *g, const void *addr) {
    const char *a = addr;
    for (int i = 0; i < KG_FAULT_RANGES; i++)
        if (g->lo[i] && a >= g->lo[i] && a < g->hi[i]) return 1;
    return 0;
}

static void on_sigbus(int sig, siginfo_t *info, void *context) {
    kg_fault_guard *g = current;
    /* Only a fault the kernel raised for an address we guard (si_code > 0:
     * not kill() or raise()) is ours to turn into an error. */
    if (g && info && info->si_code > 0 && in_guard(g, info->si_addr)) {
        current = g->prev;
        g->addr = info->si_addr;
        siglongjmp(g->env, 1);
    }
    /* Not ours: hand it to whoever handled SIGBUS before us. */
    struct sigaction prev = previous;
    if (!chaining && (prev.sa_flags & SA_SIGINFO) && prev.sa_sigaction) {
        chaining = 1;
        prev.sa_sigaction(sig, info, context);
        chaining = 0;
        return;
    }
    if (!chaining && !(prev.sa_flags & SA_SIGINFO) && prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
        chaining = 1;
        prev.sa_handler(sig);
        chaining = 0;
        return;
    }
    /* Default action (or a loop back to us): die of SIGBUS as if we were not
     * here. Returning re-runs the faulting instruction; a raised one is raised again. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGBUS, &dfl, NULL);
    if (!info || info->si_code <= 0) raise(sig);
}

int kg_fault_install(void) {
    struct sigaction now;
    if (sigaction(SIGBUS, NULL, &now) != 0) return -1;
    if ((now.sa_flags & SA_SIGINFO) && now.sa_sigaction == on_sigbus) return 0;
    /* Not installed yet, or someone (faulthandler.enable()) went in front of
     * us: (re)install, chaining to what is there now. A process that
     * installs and removes handlers concurrently from several threads could
     * race here; the ring opens and closes from one thread at a time. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    previous = now;
    if (sigaction(SIGBUS, &sa, NULL) != 0) return -1;
    return 0;
}

void kg_fault_begin(kg_fault_guard *g, const void *a, size_t alen, const void *b, size_t blen) {
    g->lo[0] = a;
    g->hi[0] = a ? (const char *)a + alen : NULL;
    g->lo[1] = b;
    g->hi[1] = b ? (const char *)b + blen : NULL;
    g->addr = NULL;
    g->prev = current;
    /* The compiler must not move the store to `current` after the guarded
     * accesses that follow: a signal fence orders it for this thread. */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    current = g;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

void kg_fault_end(kg_fault_guard *g) {
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    current = g->prev;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

int kg_fault_file_size(intptr_t handle, uint64_t *size) {
    struct stat st;
    if (handle < 0 || fstat((int)handle, &st) != 0) return -1;
    *size = (uint64_t)st.st_size;
    return 0;
}

#else
typedef int kg_fault_unused; /* Windows: the guard is inline no-ops in kg_fault.h */
#endif
