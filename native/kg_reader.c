/* kg_reader.c - attach to a ring after every health check of the spec, and
 * read batches from a cursor ("Reading from cursor r"). A reader writes
 * nothing to the ring but the `waiters` count (kg_wait.c). */
#if !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L /* sigsetjmp (kg_fault.h) under -std=c11 */
#endif
#include <stdio.h>
#include <string.h>

#include "kg_atomic.h"
#include "kg_fault.h"
#include "kg_ring.h"

#define FAIL(status, ...)                                       \
    do {                                                        \
        if (err && errlen) snprintf(err, errlen, __VA_ARGS__);  \
        kg_reader_close(r);                                     \
        return (status);                                        \
    } while (0)

void kg_reader_close(kg_reader *r) {
    if (r->slots_map.base) kg_unmap(&r->slots_map);
    if (r->header_map.base) kg_unmap(&r->header_map);
    r->hdr = NULL;
    r->slots = NULL;
}

/* The header checks of the spec, on a header that may shrink under us (run
 * under a fault guard). Fills r's geometry; the caller closes r on failure. */
static kg_status check_header(kg_reader *r, const kg_header *h, uint64_t file_size, uint64_t now, char *err,
                              size_t errlen) {
#define BAD(status, ...)                                        \
    do {                                                        \
        if (err && errlen) snprintf(err, errlen, __VA_ARGS__);  \
        return (status);                                        \
    } while (0)
    /* Acquire pairs with the writer's release store of magic, written last. */
    uint32_t magic = kg_load_acquire32(&h->magic);
    if (magic != KG_MAGIC) BAD(KG_BAD_MAGIC, "magic 0x%08X, expected 0x%08X", magic, KG_MAGIC);
    if (h->version != KG_VERSION) BAD(KG_BAD_VERSION, "version %u", h->version);
    uint32_t crc = kg_crc32c(0, h, KG_HEADER_CRC_LEN);
    if (crc != h->header_crc) BAD(KG_BAD_HEADER, "header CRC 0x%08X, computed 0x%08X", h->header_crc, crc);
    if (h->header_size != KG_HEADER_SIZE) BAD(KG_BAD_HEADER, "header_size %u", h->header_size);
    if (!(h->flags & KG_FLAG_CRC32C)) BAD(KG_BAD_HEADER, "flags 0x%X lack the CRC bit", h->flags);
    uint32_t slot_size = h->slot_size, slot_count = h->slot_count;
    const char *geometry = kg_geometry_problem(slot_size, slot_count);
    if (geometry) BAD(KG_BAD_HEADER, "%s (slot_size %u, slot_count %u)", geometry, slot_size, slot_count);
    if (h->generation == 0) BAD(KG_BAD_HEADER, "generation 0");
    uint64_t expect = (uint64_t)KG_HEADER_SIZE + (uint64_t)slot_count * slot_size;
    if (file_size != expect)
        BAD(KG_BAD_SIZE, "file is %llu bytes, header says %llu", (unsigned long long)file_size,
            (unsigned long long)expect);
    uint32_t state = kg_load_acquire32(&h->state);
    if (state == KG_STATE_CLOSED) BAD(KG_CLOSED, "state closed");
    if (state != KG_STATE_RUNNING) BAD(KG_BAD_HEADER, "state %u", state);
    /* A heartbeat ahead of our clock is no proof of life (the same clock
     * cannot be): accept the ring and judge the writer by whether the
     * heartbeat changes (kg_reader_heartbeat_age). */
    uint64_t hb = kg_load_acquire64(&h->heartbeat_mono_ns);
    if (now > hb && now - hb > KG_HEARTBEAT_STALE_NS)
        BAD(KG_STALE, "last heartbeat %.1f s ago, writer pid %u", (double)(now - hb) / 1e9, h->writer_pid);
    r->slot_size = slot_size;
    r->slot_count = slot_count;
    r->slot_mask = slot_count - 1;
    r->generation = h->generation;
    r->writer_pid = h->writer_pid;
    r->file_length = expect;
    r->hb_value = hb;
    r->hb_changed_ns = now;
    return KG_OK;
#undef BAD
}

kg_status kg_reader_open(kg_reader *r, const char *path, int start, char *err, size_t errlen) {
    kg_hist *transport = r->transport; /* the caller may have set it before opening */
    memset(r, 0, sizeof *r);
    r->transport = transport;
    r->header_map.handle = r->slots_map.handle = -1;
    if (strlen(path) >= sizeof r->path) FAIL(KG_INVALID, "path too long");
    snprintf(r->path, sizeof r->path, "%s", path);
    if (kg_fault_install() != 0) FAIL(KG_IO, "cannot install the SIGBUS guard");

    uint64_t file_size = 0;
    kg_status st = kg_map_open_checked(path, KG_HEADER_SIZE, &file_size, &r->header_map, err, errlen);
    if (st != KG_OK) {
        kg_reader_close(r);
        return st;
    }
    kg_header *h = r->header_map.base;
    const uint64_t now = kg_mono_ns();
    kg_fault_guard g;
    kg_fault_begin(&g, h, KG_HEADER_SIZE, NULL, 0);
    if (KG_FAULT_SETJMP(&g)) FAIL(KG_TRUNCATED, "the file shrank while its header was read");
    st = check_header(r, h, file_size, now, err, errlen);
    kg_fault_end(&g);
    if (st != KG_OK) {
        kg_reader_close(r);
        return st;
    }
    st = kg_map_whole_readonly(&r->header_map, (size_t)r->file_length, &r->slots_map, err, errlen);
    if (st != KG_OK) {
        kg_reader_close(r);
        return st;
    }
    r->hdr = h;
    r->slots = (const uint8_t *)r->slots_map.base + KG_HEADER_SIZE;
    r->opened_mono_ns = now;
    kg_vitals v;
    if (kg_reader_vitals(r, &v) != KG_OK) FAIL(KG_TRUNCATED, "the file shrank while it was opened");
    uint64_t w = v.write_seq;
    r->cursor = (start == KG_START_NEWEST) ? w : (w > r->slot_count ? w - r->slot_count : 0);
    r->seen_write_seq = w;
    /* Replaying from the oldest: every stamp read raises the epoch. From the
     * newest: what was published before we came is the old epoch. */
    r->epoch_mono_ns = start == KG_START_NEWEST ? now : 0;
    return KG_OK;
}

/* The file shrank: nothing is read from it again. The events the header had
 * promised and we had not read are missed. */
kg_status kg_reader_truncated(kg_reader *r) {
    if (r->broken) return r->broken;
    /* Cut to its header only: the header still says how many were published. */
    kg_fault_guard g;
    kg_fault_begin(&g, r->header_map.base, r->header_map.length, NULL, 0);
    if (KG_FAULT_SETJMP(&g) == 0) {
        uint64_t w = kg_load_acquire64(&r->hdr->write_seq);
        kg_fault_end(&g);
        if (w > r->seen_write_seq) r->seen_write_seq = w;
    }
    r->broken = KG_TRUNCATED;
    if (r->seen_write_seq > r->cursor) {
        r->missed += r->seen_write_seq - r->cursor;
        r->cursor = r->seen_write_seq;
    }
    return KG_TRUNCATED;
}

kg_status kg_reader_vitals(kg_reader *r, kg_vitals *v) {
    if (r->broken) return r->broken;
    kg_fault_guard g;
    kg_fault_begin(&g, r->header_map.base, r->header_map.length, NULL, 0);
    if (KG_FAULT_SETJMP(&g)) return kg_reader_truncated(r);
    const kg_header *h = r->hdr;
    v->write_seq = kg_load_acquire64(&h->write_seq);
    v->heartbeat_mono_ns = kg_load_acquire64(&h->heartbeat_mono_ns);
    v->heartbeat_unix_ns = kg_load_acquire64(&h->heartbeat_unix_ns);
    v->writer_dropped = kg_load_relaxed64(&h->writer_dropped);
    v->writer_truncated = kg_load_relaxed64(&h->writer_truncated);
    v->state = kg_load_acquire32(&h->state);
    kg_fault_end(&g);
    return KG_OK;
}

uint64_t kg_reader_write_seq(kg_reader *r) {
    kg_vitals v;
    return kg_reader_vitals(r, &v) == KG_OK ? v.write_seq : r->seen_write_seq;
}

void kg_reader_seek(kg_reader *r, uint64_t n) {
    uint64_t w = kg_reader_write_seq(r);
    r->cursor = n < w ? n : w;
}

static uint64_t heartbeat_age(kg_reader *r, uint64_t hb, uint64_t now) {
    if (hb != r->hb_value) {
        r->hb_value = hb;
        r->hb_changed_ns = now;
    }
    uint64_t unchanged = now > r->hb_changed_ns ? now - r->hb_changed_ns : 0;
    if (hb > now + KG_CLOCK_TOLERANCE_NS) return unchanged; /* not our clock: only its changes count */
    uint64_t claimed = now > hb ? now - hb : 0;
    return claimed > unchanged ? claimed : unchanged;
}

uint64_t kg_reader_heartbeat_age(kg_reader *r, uint64_t now) {
    kg_vitals v;
    if (kg_reader_vitals(r, &v) != KG_OK) return UINT64_MAX;
    return heartbeat_age(r, v.heartbeat_mono_ns, now);
}

kg_status kg_reader_health(kg_reader *r, uint64_t now) {
    kg_vitals v;
    kg_status st = kg_reader_vitals(r, &v);
    if (st != KG_OK) return st;
    /* Checked, not only guarded: a reader with nothing to read touches no
     * slot, and would not notice the slots were cut off. */
    uint64_t size;
    if (kg_fault_file_size(r->header_map.handle, &size) == 0 && size < r->file_length) {
        if (v.write_seq > r->seen_write_seq) r->seen_write_seq = v.write_seq;
        return kg_reader_truncated(r);
    }
    if (v.state == KG_STATE_CLOSED) return KG_CLOSED;
    if (v.state != KG_STATE_RUNNING) return KG_BAD_HEADER;
    if (heartbeat_age(r, v.heartbeat_mono_ns, now) > KG_HEARTBEAT_STALE_NS) return KG_STALE;
    kg_file_id id;
    if (kg_path_identity(r->path, &id) != KG_OK || id.dev != r->header_map.id.dev || id.ino != r->header_map.id.ino)
        return KG_REPLACED;
    return KG_OK;
}

/* Validate a copied slot: lengths, severity, CRC. */
static int slot_valid(const kg_slot *s, uint32_t slot_size) {
    uint32_t text = (uint32_t)s->source_len + s->details_len;
    if (s->source_len > KG_SOURCE_MAX || s->details_len > kg_details_max(slot_size)) return 0;
    if (KG_SLOT_TEXT_OFFSET + text > slot_size) return 0;
    if (s->severity < KG_SEV_LOW || s->severity > KG_SEV_CRITICAL) return 0;
    uint32_t crc = kg_crc32c(0, (const uint8_t *)s + KG_SLOT_CRC_FROM, KG_SLOT_CRC_HEAD_LEN);
    crc = kg_crc32c(crc, s->text, text);
    return crc == s->crc;
}

static const kg_slot *slot_at(const kg_reader *r, uint64_t n) {
    return (const kg_slot *)(r->slots + (size_t)(n & r->slot_mask) * r->slot_size);
}

/* Copy slot n into `copy` (a slot_size buffer, 8-aligned): 1 if it held
 * event n whole, 0 if it was overwritten by a later lap or being rewritten. */
static int copy_slot(const kg_reader *r, uint64_t n, uint8_t *copy) {
    const kg_slot *s = slot_at(r, n);
    /* Acquire pairs with the writer's release store of the even mark. */
    uint64_t s1 = kg_load_acquire64(&s->seq);
    if (s1 != 2 * n + 2) return 0;
    /* Copy the head, then only the text bytes the (possibly torn) lengths
     * claim, bounded by the slot. */
    memcpy(copy, s, KG_SLOT_TEXT_OFFSET);
    const kg_slot *c = (const kg_slot *)copy;
    size_t text = (size_t)c->source_len + c->details_len;
    const size_t max_text = r->slot_size - KG_SLOT_TEXT_OFFSET;
    if (text > max_text) text = max_text;
    memcpy(copy + KG_SLOT_TEXT_OFFSET, s->text, text);
    /* Pairs with the writer's fence(release) after the odd mark: if any
     * byte we copied was being rewritten, this load sees seq != s1. */
    kg_fence_acquire();
    return kg_load_relaxed64(&s->seq) == s1;
}

/* write_seq fell below the cursor: the writer's count went back (a reset,
 * which the spec does not allow but a broken or hostile writer does). Treat
 * it as a new epoch: its events are those with a publish stamp newer than
 * any read before, so walk back from w while the slots hold such events.
 * If the whole ring is the new epoch's, the reset is taken to have gone
 * back to 0 and the events before what the ring holds are missed. */
static uint64_t epoch_start(kg_reader *r, uint64_t w, uint8_t *copy, uint64_t *missed) {
    const uint64_t lo = w > r->slot_count ? w - r->slot_count : 0;
    uint64_t n = w;
    while (n > lo && copy_slot(r, n - 1, copy) && ((const kg_slot *)copy)->publish_mono_ns > r->epoch_mono_ns) n--;
    if (n == lo) *missed += lo;
    return n;
}

/* How far a read got: kept in volatile memory, so that a fault (siglongjmp)
 * in the middle of it loses no count. */
typedef struct read_progress {
    uint64_t cur, w, missed, corrupt;
    size_t count;
    int done;
} read_progress;

static void read_slots(kg_reader *r, kg_batch *b, uint8_t *copy, volatile read_progress *p) {
    uint64_t w = kg_load_acquire64(&r->hdr->write_seq);
    uint64_t cur = r->cursor, missed = 0, corrupt = 0;
    size_t count = 0, text_used = 0;
    const size_t max_text = r->slot_size - KG_SLOT_TEXT_OFFSET;
    const kg_slot *c = (const kg_slot *)copy;
    p->w = w;
    if (w < cur) {
        r->resets++;
        if (r->seen_write_seq > cur) missed += r->seen_write_seq - cur; /* the old epoch's unread events */
        cur = epoch_start(r, w, copy, &missed);
        p->cur = cur;
        p->missed = missed;
    }
    /* Every event below w was published before this load: stamp the moment
     * this reader observed them now, in C, before any GIL is taken. */
    const uint64_t observed = cur < w ? kg_mono_ns() : 0;

    while (cur < w && count < b->capacity && text_used + max_text <= b->text_capacity) {
        if (w - cur > r->slot_count) { /* lapped: the oldest still held is w - slot_count */
            missed += (w - r->slot_count) - cur;
            cur = w - r->slot_count;
        }
        if (!copy_slot(r, cur, copy)) {
            missed++;
        } else if (!slot_valid(c, r->slot_size)) {
            corrupt++;
        } else {
            kg_event *e = &b->events[count++];
            e->seq = cur;
            e->publish_mono_ns = c->publish_mono_ns;
            e->observe_mono_ns = observed;
            e->timestamp_unix_us = c->timestamp_unix_us;
            e->threat_type = c->threat_type <= KG_THREAT_RATE_LIMIT_VIOLATION ? c->threat_type : KG_THREAT_UNKNOWN;
            e->severity = c->severity;
            e->blocked = c->blocked ? 1 : 0;
            e->flags = c->flags;
            e->reserved = 0;
            e->source_len = c->source_len;
            e->details_len = c->details_len;
            e->text_offset = (uint32_t)text_used;
            memcpy(b->text + text_used, c->text, (size_t)c->source_len + c->details_len);
            text_used += (size_t)c->source_len + c->details_len;
            uint64_t pub = c->publish_mono_ns;
            if (pub > r->epoch_mono_ns) r->epoch_mono_ns = pub;
            /* not replayed history, and not a stamp from the future */
            if (r->transport && pub >= r->opened_mono_ns && pub <= observed + KG_CLOCK_TOLERANCE_NS)
                kg_hist_record(r->transport, observed > pub ? observed - pub : 0);
        }
        cur++;
        p->cur = cur;
        p->count = count;
        p->missed = missed;
        p->corrupt = corrupt;
    }
    p->cur = cur;
    p->count = count;
    p->missed = missed;
    p->corrupt = corrupt;
}

kg_status kg_reader_read(kg_reader *r, kg_batch *b) {
    b->count = 0;
    b->missed = b->corrupt = 0;
    if (r->broken) return r->broken;
    /* A local copy of the slot being read: the ring may change under us, the
     * copy cannot. Aligned for the u64 fields. */
    _Alignas(8) uint8_t copy[KG_SLOT_SIZE_MAX];
    volatile read_progress p = {.cur = r->cursor, .w = r->seen_write_seq};
    kg_fault_guard g;
    kg_fault_begin(&g, r->header_map.base, r->header_map.length, r->slots_map.base, r->slots_map.length);
    if (KG_FAULT_SETJMP(&g) == 0) {
        read_slots(r, b, copy, &p);
        kg_fault_end(&g);
        p.done = 1;
    }
    /* after a fault the guard has ended, and p holds what was read before it */
    const kg_status st = p.done ? KG_OK : KG_TRUNCATED;
    b->count = p.count;
    b->missed = p.missed;
    b->corrupt = p.corrupt;
    r->cursor = p.cur;
    if (p.w > r->seen_write_seq || st == KG_OK) r->seen_write_seq = p.w;
    r->delivered += b->count;
    r->missed += b->missed;
    r->corrupt += b->corrupt;
    if (st != KG_OK) {
        uint64_t before = r->missed;
        kg_reader_truncated(r);
        b->missed += r->missed - before;
    }
    return st;
}
