/* kg_wait.c - how a reader waits for the next event without burning a core
 * ("Waiting without burning a core" of the spec).
 *
 * 1. Spin on write_seq for a budget, with the CPU pause instruction.
 * 2. Then sleep on the shared futex word wake_seq (Linux), announcing itself
 *    in `waiters` so the writer knows to wake it; elsewhere back off: yield,
 *    then sleeps growing from 50 us to 1 ms.
 * Adaptive mode tunes the spin budget from what actually happened:
 * - an event arrived while spinning: spinning pays, double the budget;
 * - the reader slept and was woken sooner than the longest budget: a spin
 *   would have caught that event without the wake-up, double the budget
 *   (from 1 us if it was 0);
 * - the reader slept longer than that: spinning would only have burned CPU,
 *   halve the budget (down to 0, a pure futex sleeper).
 * At 1,000 events/s the budget falls to 0 and the reader costs what a bare
 * futex sleeper costs; at tens of thousands of events/s it spins between
 * them; under a flood it never waits at all, because every read finds events.
 */
#if !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L /* sigsetjmp (kg_fault.h) under -std=c11 */
#endif
#include "kg_atomic.h"
#include "kg_fault.h"
#include "kg_ring.h"

#define SPIN_GROW_FROM_NS 1000ull    /* adaptive: a budget of 0 grows back from 1 us */
#define BACKOFF_MIN_NS 50000ull      /* non-futex platforms: first sleep */
#define BACKOFF_MAX_NS 1000000ull    /* ... growing to 1 ms */

void kg_wait_init(kg_wait *w, uint64_t spin_ns, int adaptive) {
    w->spin_max_ns = spin_ns;
    w->spin_ns = adaptive ? 0 : spin_ns;
    w->adaptive = adaptive;
    w->sleep_ns = 100000000ull; /* the spec's 100 ms: bounds how long a stop or a dead writer goes unseen */
    w->spins_won = w->sleeps = 0;
    w->stop = NULL;
}

static void adapt(kg_wait *w, int grow) {
    if (!w->adaptive) return;
    if (grow) {
        uint64_t grown = w->spin_ns ? w->spin_ns * 2 : SPIN_GROW_FROM_NS;
        w->spin_ns = grown < w->spin_max_ns ? grown : w->spin_max_ns;
    } else {
        w->spin_ns /= 2;
        if (w->spin_ns < SPIN_GROW_FROM_NS / 2) w->spin_ns = 0;
    }
}

static int has_data(const kg_reader *r) { return kg_load_acquire64(&r->hdr->write_seq) != r->cursor; }
static int stopping(const kg_wait *w) { return w->stop && *w->stop; }

static kg_status wait_guarded(kg_reader *r, kg_wait *w, uint64_t timeout_ns) {
    kg_header *h = r->hdr;
    if (has_data(r)) return KG_OK;
    const uint64_t start = kg_mono_ns();
    const uint64_t deadline = start + timeout_ns;

    /* 1. spin */
    if (w->spin_ns) {
        uint64_t spin_end = start + (w->spin_ns < timeout_ns ? w->spin_ns : timeout_ns);
        unsigned n = 0;
        for (;;) {
            for (int i = 0; i < 16; i++) {
                if (has_data(r)) {
                    w->spins_won++;
                    adapt(w, 1);
                    return KG_OK;
                }
                kg_cpu_relax();
            }
            if ((++n & 7) == 0 && (kg_mono_ns() >= spin_end || stopping(w))) break;
        }
    }

    /* 2. sleep */
    const uint64_t sleep_start = kg_mono_ns();
    uint64_t backoff = BACKOFF_MIN_NS;
    for (;;) {
        if (kg_load_acquire32(&h->state) == KG_STATE_CLOSED) return has_data(r) ? KG_OK : KG_CLOSED;
        if (stopping(w)) return KG_TIMEOUT;
        uint64_t now = kg_mono_ns();
        if (now >= deadline) {
            adapt(w, 0); /* a long quiet spell: spinning would have bought nothing */
            return KG_TIMEOUT;
        }
        uint64_t left = deadline - now;
        uint64_t nap = left < w->sleep_ns ? left : w->sleep_ns;
        w->sleeps++;
#if KG_HAVE_SHARED_FUTEX
        (void)backoff;
        uint32_t v = kg_load_acquire32(&h->wake_seq);
        /* seq_cst add, then seq_cst load of write_seq: pairs with the
         * writer's seq_cst store of write_seq, then seq_cst load of waiters.
         * Either the writer sees us waiting and bumps wake_seq (so the futex
         * returns at once or is woken), or we see its event here. */
        kg_fetch_add_seqcst32(&h->waiters, 1);
        /* Any state but closed sleeps: a header whose state is out of range
         * is reported by kg_reader_health, never spun on. */
        if (kg_load_seqcst64(&h->write_seq) == r->cursor && kg_load_acquire32(&h->state) != KG_STATE_CLOSED &&
            !stopping(w))
            kg_futex_wait(&h->wake_seq, v, nap);
        kg_fetch_sub_seqcst32(&h->waiters, 1);
#else
        (void)nap;
        if (backoff == BACKOFF_MIN_NS) kg_yield();
        kg_sleep_ns(backoff < left ? backoff : left);
        if (backoff < BACKOFF_MAX_NS) backoff *= 2;
#endif
        if (has_data(r)) {
            adapt(w, kg_mono_ns() - sleep_start < w->spin_max_ns);
            return KG_OK;
        }
    }
}

kg_status kg_wait_for_data(kg_reader *r, kg_wait *w, uint64_t timeout_ns) {
    if (r->broken) return r->broken;
    /* The header page may be cut off under us while we spin or sleep. */
    kg_fault_guard g;
    kg_fault_begin(&g, r->header_map.base, r->header_map.length, NULL, 0);
    if (KG_FAULT_SETJMP(&g)) return kg_reader_truncated(r);
    kg_status st = wait_guarded(r, w, timeout_ns);
    kg_fault_end(&g);
    return st;
}
