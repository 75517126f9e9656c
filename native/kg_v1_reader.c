/* kg_v1_reader.c - read the Shield's v1 ring without consuming it (kg_v1.h).
 *
 * Event n (n = the events_written value it was written at) sits at a byte
 * offset that we derive from a consistent (events_written, write_pos) pair:
 * pos(n) = write_pos - (events_written - n) * 344, modulo the data area's size
 * D. Upstream writes an event whole at its position, then stores write_pos
 * (Release), then increments events_written (Relaxed); so on x86_64 (the
 * format's layout; TSO keeps stores in order) every event below the
 * events_written we load after an acquire was completely written.
 *
 * Laps: the data area holds C = floor(D / 344) whole events. While event W is
 * being written (events_written == W), it may cover event W - C. So after
 * copying event n we load events_written again (W2): the copy is trusted only
 * if W2 - n < C; otherwise the writer may have been over it and it is missed.
 *
 * Every access to the mapping runs under the SIGBUS guard (kg_fault.h): a file
 * truncated under us is KG_TRUNCATED, and the batch being read is dropped.
 */
#define _POSIX_C_SOURCE 200809L /* sigsetjmp (kg_fault.h) under -std=c11 */
#include <stdio.h>
#include <string.h>

#include "kg_atomic.h"
#include "kg_fault.h"
#include "kg_v1.h"

#define FAIL(status, ...)                                       \
    do {                                                        \
        if (err && errlen) snprintf(err, errlen, __VA_ARGS__);  \
        kg_v1_close(r);                                         \
        return (status);                                        \
    } while (0)

uint32_t kg_v1_checksum(const kg_v1_event *e) {
    uint32_t sum = (uint32_t)e->timestamp_us + e->threat_type + e->severity + e->blocked;
    for (unsigned i = 0; i < KG_V1_SOURCE_LEN; i++) sum += e->source[i];
    for (unsigned i = 0; i < KG_V1_DETAILS_LEN; i++) sum += e->details[i];
    return sum;
}

/* (pos +/- k events) modulo D, without overflow for any k. */
static uint64_t pos_back(uint64_t pos, uint64_t k, uint64_t d) {
    uint64_t step = (k % d) * KG_V1_EVENT_SIZE % d;
    return (pos + d - step) % d;
}
static uint64_t pos_from_zero(uint64_t n, uint64_t d) { return (n % d) * KG_V1_EVENT_SIZE % d; }

void kg_v1_close(kg_v1_reader *r) {
    if (r->map.base) kg_unmap(&r->map);
    r->hdr = NULL;
    r->data = NULL;
}

/* A consistent (events_written, write_pos): equal counts around the position
 * load, and not the instant between upstream's two stores (write_pos already
 * past event W, the count not yet W + 1), which we recognise when the ring
 * follows the from-zero layout (pos(n) = n * 344 mod D, what every writer
 * that started at 0 keeps). A writer that died between its two stores leaves
 * that state forever: after a few tries the event is taken as written. */
static void snapshot(const kg_v1_reader *r, uint64_t *w_out, uint64_t *p_out) {
    uint64_t w = 0, p = 0;
    for (int tries = 0; tries < 64; tries++) {
        w = kg_load_acquire64(&r->hdr->events_written);
        p = kg_load_acquire64(&r->hdr->write_pos);
        if (kg_load_acquire64(&r->hdr->events_written) != w) continue;
        if (p == pos_from_zero(w, r->data_size) || p != pos_from_zero(w + 1, r->data_size)) {
            *w_out = w;
            *p_out = p;
            return;
        }
        kg_cpu_relax();
    }
    *w_out = w + 1;
    *p_out = p;
}

static kg_status open_checks(kg_v1_reader *r, const kg_v1_header *h, uint64_t file_size, int start, char *err,
                             size_t errlen);

kg_status kg_v1_open(kg_v1_reader *r, const char *path, int start, char *err, size_t errlen) {
    kg_hist *transport = r->transport;
    memset(r, 0, sizeof *r);
    r->transport = transport;
    r->map.handle = -1;
    if (strlen(path) >= sizeof r->path) FAIL(KG_INVALID, "path too long");
    if (kg_fault_install() != 0) FAIL(KG_IO, "cannot install the SIGBUS guard");
    snprintf(r->path, sizeof r->path, "%s", path);
    uint64_t file_size = 0;
    kg_status st = kg_map_open_readonly(path, KG_V1_MIN_FILE, &file_size, &r->map, err, errlen);
    if (st != KG_OK) {
        kg_v1_close(r);
        return st;
    }
    const kg_v1_header *h = r->map.base;
    kg_fault_guard g;
    kg_fault_begin(&g, r->map.base, r->map.length, NULL, 0);
    if (KG_FAULT_SETJMP(&g)) FAIL(KG_TRUNCATED, "the file shrank while it was opened");
    st = open_checks(r, h, file_size, start, err, errlen);
    kg_fault_end(&g);
    if (st != KG_OK) kg_v1_close(r);
    return st;
}

/* kg_v1_open's checks of the mapped header, under its guard. */
static kg_status open_checks(kg_v1_reader *r, const kg_v1_header *h, uint64_t file_size, int start, char *err,
                             size_t errlen) {
#undef FAIL
#define FAIL(status, ...)                                      \
    do {                                                       \
        if (err && errlen) snprintf(err, errlen, __VA_ARGS__); \
        return (status);                                       \
    } while (0)
    uint32_t magic = kg_load_acquire32(&h->magic);
    if (magic != KG_MAGIC) FAIL(KG_BAD_MAGIC, "magic 0x%08X, expected 0x%08X", magic, KG_MAGIC);
    if (h->version != KG_V1_VERSION) FAIL(KG_BAD_VERSION, "version %u", h->version);
    if (h->total_size != file_size)
        FAIL(KG_BAD_SIZE, "file is %llu bytes, its v1 header says %llu", (unsigned long long)file_size,
             (unsigned long long)h->total_size);
    r->hdr = h;
    r->data = (const uint8_t *)r->map.base + KG_V1_HEADER_SIZE;
    r->data_size = file_size - KG_V1_HEADER_SIZE;
    r->capacity = r->data_size / KG_V1_EVENT_SIZE;
    uint64_t w, p;
    snapshot(r, &w, &p);
    if (p >= r->data_size)
        FAIL(KG_BAD_HEADER, "write_pos %llu is past the %llu-byte data area", (unsigned long long)p,
             (unsigned long long)r->data_size);
    r->opened_mono_ns = kg_mono_ns();
    r->last_event_mono_ns = r->opened_mono_ns; /* poll fast at first: a ring just attached is likely busy */
    r->writer_pid = kg_load_acquire32(&h->writer_pid);
    /* Oldest: the oldest event no write can be over (see the top of this file). */
    r->cursor = (start == KG_START_NEWEST) ? w : (w >= r->capacity ? w - r->capacity + 1 : 0);
    r->cursor_pos = pos_back(p, w - r->cursor, r->data_size);
    return KG_OK;
}

/* snapshot() under the SIGBUS guard (its own frame: nothing of the caller's is clobbered). */
static kg_status guarded_snapshot(const kg_v1_reader *r, uint64_t *w, uint64_t *p) {
    kg_fault_guard g;
    kg_fault_begin(&g, r->map.base, r->map.length, NULL, 0);
    if (KG_FAULT_SETJMP(&g)) return KG_TRUNCATED;
    snapshot(r, w, p);
    kg_fault_end(&g);
    return KG_OK;
}

kg_status kg_v1_events_written(const kg_v1_reader *r, uint64_t *out) {
    uint64_t p;
    return guarded_snapshot(r, out, &p);
}

kg_status kg_v1_header_copy(const kg_v1_reader *r, kg_v1_header *out) {
    kg_fault_guard g;
    kg_fault_begin(&g, r->map.base, r->map.length, NULL, 0);
    if (KG_FAULT_SETJMP(&g)) return KG_TRUNCATED;
    memcpy(out, r->hdr, sizeof *out);
    kg_fault_end(&g);
    return KG_OK;
}

kg_status kg_v1_seek(kg_v1_reader *r, uint64_t n, int fp, uint64_t fp_timestamp, uint32_t fp_checksum) {
    uint64_t w, p;
    if (guarded_snapshot(r, &w, &p) != KG_OK) return KG_TRUNCATED;
    if (n > w) n = w; /* past the writer: a reset the next read notices by the fingerprint */
    r->cursor = n;
    r->cursor_pos = pos_back(p, w - n, r->data_size);
    r->fp_valid = fp && n > 0;
    r->fp_pos = pos_back(r->cursor_pos, 1, r->data_size);
    r->fp_timestamp = fp_timestamp;
    r->fp_checksum = fp_checksum;
    return KG_OK;
}

kg_status kg_v1_health(kg_v1_reader *r) {
    uint64_t size = 0;
    if (r->size_problem || (kg_fault_file_size(r->map.handle, &size) == 0 && size < r->map.length)) {
        r->size_problem = 1;
        return KG_TRUNCATED;
    }
    uint32_t magic = 0, version = 0;
    kg_fault_guard g;
    kg_fault_begin(&g, r->map.base, r->map.length, NULL, 0);
    if (KG_FAULT_SETJMP(&g)) {
        r->size_problem = 1;
        return KG_TRUNCATED;
    }
    magic = kg_load_acquire32(&r->hdr->magic);
    version = kg_load_acquire32(&r->hdr->version);
    kg_fault_end(&g);
    if (magic != KG_MAGIC) return KG_BAD_MAGIC;
    if (version != KG_V1_VERSION) return KG_BAD_VERSION;
    kg_file_id id;
    if (kg_path_identity(r->path, &id) != KG_OK || id.dev != r->map.id.dev || id.ino != r->map.id.ino)
        return KG_REPLACED;
    return KG_OK;
}

/* Start over after a reset: the new life's oldest event that no write can be over. */
static void restart(kg_v1_reader *r, uint64_t w, uint64_t p, kg_batch *b) {
    uint64_t first = w >= r->capacity ? w - r->capacity + 1 : 0;
    b->missed += first; /* the new life's events we never saw */
    r->resets++;
    r->cursor = first;
    r->cursor_pos = pos_back(p, w - first, r->data_size);
    r->fp_valid = 0;
    r->writer_pid = kg_load_acquire32(&r->hdr->writer_pid);
}

/* The event at `pos` as a trailing-NUL-trimmed length (upstream pads with NULs). */
static uint16_t text_len(const uint8_t *s, unsigned max) {
    unsigned n = max;
    while (n > 0 && s[n - 1] == 0) n--;
    return (uint16_t)n;
}

/* How far a read got: kept in volatile memory, so that a fault (siglongjmp)
 * in the middle of it loses no count (as kg_reader.c's read_progress). */
typedef struct v1_progress {
    uint64_t cur, pos, w;
    size_t count;
    uint64_t missed, corrupt;
} v1_progress;

static void read_events(kg_v1_reader *r, kg_batch *b, volatile v1_progress *p) {
    const uint64_t d = r->data_size, cap = r->capacity;
    uint64_t w, wp;
    snapshot(r, &w, &wp);
    p->w = w;
    if (wp >= d) return; /* a position no writer of this file writes: health will tell */
    /* Upstream sets writer_pid only when it initialises the header: a new pid
     * says the ring was reset, unless the event before our cursor, still held,
     * proves otherwise (a writer that stamps its pid on every start). */
    const uint32_t pid = kg_load_acquire32(&r->hdr->writer_pid);
    if (w < r->cursor) {
        restart(r, w, wp, b); /* numbered below us */
    } else if (r->fp_valid && w - (r->cursor - 1) < cap && r->fp_pos + KG_V1_EVENT_SIZE <= d) {
        const kg_v1_event *e = (const kg_v1_event *)(r->data + r->fp_pos);
        if (e->timestamp_us != r->fp_timestamp || e->checksum != r->fp_checksum)
            restart(r, w, wp, b); /* re-initialised and written past our cursor again */
        else
            r->writer_pid = pid;
    } else if (pid != r->writer_pid) {
        if (w - r->cursor >= cap) restart(r, w, wp, b); /* lapped anyway: count the new life's events */
        else r->writer_pid = pid; /* cannot tell: never deliver an event twice */
    }
    if (w - r->cursor >= cap) { /* lapped: the oldest event still safe is w - cap + 1 */
        uint64_t first = w - cap + 1;
        b->missed += first - r->cursor;
        r->cursor = first;
        r->cursor_pos = pos_back(wp, w - first, d);
        r->fp_valid = 0;
    }
    uint64_t n = r->cursor, pos = r->cursor_pos;
    p->cur = n;
    p->pos = pos;
    p->missed = b->missed;
    const uint64_t observed = n < w ? kg_mono_ns() : 0;
    const uint64_t observed_unix_us = n < w ? kg_unix_ns() / 1000 : 0;
    size_t text_used = 0;
    _Alignas(8) kg_v1_event c;
    while (n < w && b->count < b->capacity && text_used + KG_V1_TEXT_MAX <= b->text_capacity) {
        if (pos + KG_V1_EVENT_SIZE > d) {
            /* Written across the end of the data area: upstream writes its tail past
             * the end of its mapping. Never read past ours; its checksum is gone. */
            b->corrupt++;
            r->fp_valid = 0;
            n++;
            pos = (pos + KG_V1_EVENT_SIZE) % d;
            p->cur = n;
            p->pos = pos;
            p->corrupt = b->corrupt;
            continue;
        }
        memcpy(&c, r->data + pos, sizeof c);
        kg_fence_acquire(); /* the copy happens before the count is loaded again */
        uint64_t w2 = kg_load_acquire64(&r->hdr->events_written);
        r->fp_valid = 1;
        r->fp_pos = pos;
        r->fp_timestamp = c.timestamp_us;
        r->fp_checksum = c.checksum;
        if (w2 >= n && w2 - n >= cap) { /* the writer may have been over it while we copied */
            b->missed++;
            r->fp_valid = 0;
        } else if (c.checksum != kg_v1_checksum(&c) || c.severity < KG_SEV_LOW || c.severity > KG_SEV_CRITICAL) {
            b->corrupt++;
        } else {
            kg_event *e = &b->events[b->count++];
            uint64_t age_ns = observed_unix_us > c.timestamp_us ? (observed_unix_us - c.timestamp_us) * 1000 : 0;
            e->seq = n;
            e->publish_mono_ns = observed > age_ns ? observed - age_ns : 0;
            e->observe_mono_ns = observed;
            e->timestamp_unix_us = c.timestamp_us;
            e->threat_type = c.threat_type <= KG_THREAT_RATE_LIMIT_VIOLATION ? c.threat_type : KG_THREAT_UNKNOWN;
            e->severity = c.severity;
            e->blocked = c.blocked ? 1 : 0;
            /* No lengths in v1: a field with no NUL left may have been cut. */
            e->flags = (uint8_t)((c.source[KG_V1_SOURCE_LEN - 1] ? KG_EVENT_FLAG_SOURCE_TRUNCATED : 0) |
                                 (c.details[KG_V1_DETAILS_LEN - 1] ? KG_EVENT_FLAG_DETAILS_TRUNCATED : 0));
            e->reserved = 0;
            e->source_len = text_len(c.source, KG_V1_SOURCE_LEN);
            e->details_len = text_len(c.details, KG_V1_DETAILS_LEN);
            e->text_offset = (uint32_t)text_used;
            memcpy(b->text + text_used, c.source, e->source_len);
            memcpy(b->text + text_used + e->source_len, c.details, e->details_len);
            text_used += (size_t)e->source_len + e->details_len;
            if (r->transport && e->publish_mono_ns >= r->opened_mono_ns) /* not replayed history */
                kg_hist_record(r->transport, observed - e->publish_mono_ns);
        }
        n++;
        pos = (pos + KG_V1_EVENT_SIZE) % d;
        p->cur = n;
        p->pos = pos;
        p->count = b->count;
        p->missed = b->missed;
        p->corrupt = b->corrupt;
    }
}

kg_status kg_v1_read(kg_v1_reader *r, kg_batch *b) {
    b->count = 0;
    b->missed = b->corrupt = 0;
    if (r->size_problem) return KG_TRUNCATED;
    volatile v1_progress p = {.cur = r->cursor, .pos = r->cursor_pos, .w = r->cursor};
    int faulted = 0;
    kg_fault_guard g;
    kg_fault_begin(&g, r->map.base, r->map.length, NULL, 0);
    if (KG_FAULT_SETJMP(&g) == 0) {
        read_events(r, b, &p);
        kg_fault_end(&g);
    } else {
        faulted = 1;
    }
    /* after a fault the guard has ended, and p holds what was read before it:
     * those events are handed out (as v2 does); the rest the header had
     * promised are missed, and every later read says KG_TRUNCATED */
    b->count = p.count;
    b->missed = p.missed;
    b->corrupt = p.corrupt;
    r->cursor = p.cur;
    r->cursor_pos = p.pos;
    if (faulted) {
        r->size_problem = 1;
        r->fp_valid = 0;
        if (p.w > p.cur) b->missed += p.w - p.cur;
        r->cursor = p.w > p.cur ? p.w : p.cur;
    }
    r->delivered += b->count;
    r->missed += b->missed;
    r->corrupt += b->corrupt;
    return faulted ? KG_TRUNCATED : KG_OK;
}

static kg_status wait_events(kg_v1_reader *r, kg_wait *w, uint64_t timeout_ns, uint64_t min_ns, uint64_t max_ns,
                             uint64_t idle_ns) {
    const uint64_t start = kg_mono_ns();
    if (w->spin_ns < min_ns) w->spin_ns = min_ns;
    for (;;) {
        if (w->stop && *w->stop) return KG_TIMEOUT;
        uint64_t now = kg_mono_ns();
        if (kg_load_acquire64(&r->hdr->events_written) != r->cursor) {
            w->spin_ns = min_ns; /* events come in runs: look again soon */
            r->last_event_mono_ns = now;
            w->spins_won++;
            return KG_OK;
        }
        if (now - start >= timeout_ns) return KG_TIMEOUT;
        uint64_t left = timeout_ns - (now - start);
        kg_sleep_ns(w->spin_ns < left ? w->spin_ns : left);
        w->sleeps++;
        uint64_t ceiling = now - r->last_event_mono_ns < KG_V1_ACTIVE_NS ? max_ns : idle_ns;
        w->spin_ns = w->spin_ns * 2 < ceiling ? w->spin_ns * 2 : ceiling;
    }
}

kg_status kg_v1_wait(kg_v1_reader *r, kg_wait *w, uint64_t timeout_ns, uint64_t min_ns, uint64_t max_ns,
                     uint64_t idle_ns) {
    if (r->size_problem) return KG_TRUNCATED;
    kg_fault_guard g;
    kg_fault_begin(&g, r->map.base, r->map.length, NULL, 0);
    if (KG_FAULT_SETJMP(&g)) {
        r->size_problem = 1;
        return KG_TRUNCATED;
    }
    kg_status st = wait_events(r, w, timeout_ns, min_ns, max_ns, idle_ns);
    kg_fault_end(&g);
    return st;
}
