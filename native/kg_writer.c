/* kg_writer.c - create a ring and publish into it ("Creation" and "Writing
 * event n" of the spec). The writer never waits for a reader. */
#if !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L /* sigsetjmp (kg_fault.h) under -std=c11 */
#endif
#include <stdio.h>
#include <string.h>

#include "kg_atomic.h"
#include "kg_fault.h"
#include "kg_ring.h"

/* Longest prefix of s[0..len) no longer than max bytes that ends on a UTF-8
 * character boundary (never splits a multi-byte sequence). */
static size_t utf8_cut(const char *s, size_t len, size_t max) {
    if (len <= max) return len;
    size_t cut = max;
    while (cut > 0 && ((unsigned char)s[cut] & 0xC0u) == 0x80u) cut--; /* s[cut] is a continuation byte */
    return cut;
}

static uint64_t new_generation(void) {
    /* Unique per writer start: time, pid and a stack address mixed (splitmix64). */
    uint64_t x = kg_unix_ns() ^ ((uint64_t)kg_getpid() << 32) ^ (uint64_t)(uintptr_t)&x;
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    x ^= x >> 31;
    return x ? x : 1;
}

kg_status kg_writer_create(kg_writer *w, const char *path, uint32_t slot_size, uint32_t slot_count, char *err,
                           size_t errlen) {
    memset(w, 0, sizeof *w);
    w->lock = -1;
    w->map.handle = -1;
    const char *geometry = kg_geometry_problem(slot_size, slot_count);
    if (geometry) {
        snprintf(err, errlen, "%s (slot size %u, slot count %u)", geometry, slot_size, slot_count);
        return KG_INVALID;
    }
    if (strlen(path) + 32 >= sizeof w->path) {
        snprintf(err, errlen, "path too long");
        return KG_INVALID;
    }
    snprintf(w->path, sizeof w->path, "%s", path);
    if (kg_fault_install() != 0) {
        snprintf(err, errlen, "cannot install the SIGBUS guard");
        return KG_IO;
    }

    kg_status st = kg_dir_prepare(path, err, errlen);
    if (st != KG_OK) return st;

    char lock_path[1100], tmp_path[1100];
    /* NAME.shm -> NAME.lock beside it (kindly-guard.lock for the spec's name) */
    snprintf(lock_path, sizeof lock_path, "%s", path);
    char *dot = strrchr(lock_path, '.'), *slash = strrchr(lock_path, '/');
#if defined(_WIN32)
    char *backslash = strrchr(lock_path, '\\'); /* C:\Users\a.b\ring: the dot is not the ring's */
    if (backslash && (!slash || backslash > slash)) slash = backslash;
#endif
    if (dot && (!slash || dot > slash)) snprintf(dot, sizeof lock_path - (size_t)(dot - lock_path), ".lock");
    else strncat(lock_path, ".lock", sizeof lock_path - strlen(lock_path) - 1);
    st = kg_lock_acquire(lock_path, &w->lock, err, errlen);
    if (st != KG_OK) return st;

    snprintf(tmp_path, sizeof tmp_path, "%s.%u.tmp", path, kg_getpid());
    size_t length = (size_t)KG_HEADER_SIZE + (size_t)slot_count * slot_size;
    st = kg_map_create(tmp_path, length, &w->map, err, errlen);
    if (st != KG_OK) {
        kg_lock_release(w->lock);
        w->lock = -1;
        return st;
    }
    kg_header *h = w->map.base; /* a new file: all zero */
    h->version = KG_VERSION;
    h->header_size = KG_HEADER_SIZE;
    h->slot_size = slot_size;
    h->slot_count = slot_count;
    h->flags = KG_FLAG_CRC32C;
    h->generation = new_generation();
    h->writer_pid = kg_getpid();
    h->created_unix_ns = kg_unix_ns();
    uint64_t now = kg_mono_ns();
    h->heartbeat_mono_ns = now;
    h->heartbeat_unix_ns = kg_unix_ns();
    h->state = KG_STATE_RUNNING;
    /* header_crc covers bytes 0..55 with magic already in place */
    uint32_t magic = KG_MAGIC;
    uint8_t line0[KG_HEADER_CRC_LEN];
    memcpy(line0, h, sizeof line0);
    memcpy(line0, &magic, 4);
    h->header_crc = kg_crc32c(0, line0, sizeof line0);
    /* magic last, release: a reader that sees the magic sees the whole header */
    kg_store_release32(&h->magic, KG_MAGIC);

    st = kg_publish_file(tmp_path, path, err, errlen);
    if (st != KG_OK) {
        kg_unmap(&w->map);
        kg_remove_file(tmp_path);
        kg_lock_release(w->lock);
        w->lock = -1;
        return st;
    }
    w->hdr = h;
    w->generation = h->generation;
    w->slots = (uint8_t *)w->map.base + KG_HEADER_SIZE;
    w->slot_size = slot_size;
    w->slot_mask = slot_count - 1;
    w->next = 0;
    w->last_heartbeat_ns = now;
    return KG_OK;
}

static size_t publish_guarded(kg_writer *w, const kg_event_in *events, size_t n) {
    kg_header *h = w->hdr;
    const uint64_t now = kg_mono_ns(); /* one stamp: the batch becomes visible at one store */
    const size_t details_max = kg_details_max(w->slot_size);
    uint64_t seq = w->next;
    size_t published = 0;
    for (size_t i = 0; i < n; i++) {
        const kg_event_in *e = &events[i];
        if (e->severity < KG_SEV_LOW || e->severity > KG_SEV_CRITICAL || e->blocked > 1) {
            kg_add_relaxed64(&h->writer_dropped, 1);
            continue;
        }
        kg_slot *s = (kg_slot *)(w->slots + (size_t)(seq & w->slot_mask) * w->slot_size);
        size_t src_len = utf8_cut(e->source, e->source_len, KG_SOURCE_MAX);
        size_t det_len = utf8_cut(e->details, e->details_len, details_max);
        uint8_t flags = (uint8_t)((src_len < e->source_len ? KG_EVENT_FLAG_SOURCE_TRUNCATED : 0) |
                                  (det_len < e->details_len ? KG_EVENT_FLAG_DETAILS_TRUNCATED : 0));
        if (flags) kg_add_relaxed64(&h->writer_truncated, 1);

        kg_store_relaxed64(&s->seq, 2 * seq + 1);
        /* Pairs with the reader's fence(acquire) before its second seq load:
         * the odd mark is visible before any payload byte changes, so a reader
         * that copied a half-written payload sees seq changed. */
        kg_fence_release();
        s->publish_mono_ns = now;
        s->timestamp_unix_us = e->timestamp_unix_us;
        s->threat_type = e->threat_type;
        s->severity = e->severity;
        s->blocked = e->blocked;
        s->flags = flags;
        s->reserved = 0;
        s->source_len = (uint16_t)src_len;
        s->details_len = (uint16_t)det_len;
        memcpy(s->text, e->source, src_len);
        memcpy(s->text + src_len, e->details, det_len);
        uint32_t crc = kg_crc32c(0, (const uint8_t *)s + KG_SLOT_CRC_FROM, KG_SLOT_CRC_HEAD_LEN);
        s->crc = kg_crc32c(crc, s->text, src_len + det_len);
        /* Pairs with the reader's load(seq, acquire): payload before the even mark. */
        kg_store_release64(&s->seq, 2 * seq + 2);
        seq++;
        published++;
    }
    if (!published) return 0;
    w->next = seq;
    /* seq_cst pairs with the reader's seq_cst add to waiters and load of
     * write_seq before it sleeps: either we see its waiter, or it sees this. */
    kg_store_seqcst64(&h->write_seq, seq);
    if (kg_load_seqcst32(&h->waiters) > 0) {
        kg_fetch_add_seqcst32(&h->wake_seq, 1);
        kg_futex_wake_all(&h->wake_seq);
    }
    if (now - w->last_heartbeat_ns >= KG_HEARTBEAT_PERIOD_NS / 4) {
        kg_store_release64(&h->heartbeat_mono_ns, now);
        kg_store_release64(&h->heartbeat_unix_ns, kg_unix_ns());
        w->last_heartbeat_ns = now;
    }
    return published;
}

/* Every store into the mapping runs under the fault guard: a file truncated
 * under the writer (by another program) breaks the writer, it does not kill it. */
#define GUARDED(w, on_fault)                                                   \
    kg_fault_guard g;                                                          \
    kg_fault_begin(&g, (w)->map.base, (w)->map.length, NULL, 0);              \
    if (KG_FAULT_SETJMP(&g)) {                                                 \
        (w)->broken = KG_TRUNCATED;                                            \
        on_fault;                                                              \
    }

size_t kg_writer_publish(kg_writer *w, const kg_event_in *events, size_t n) {
    if (w->broken || !w->hdr) return 0;
    GUARDED(w, return 0);
    size_t done = publish_guarded(w, events, n);
    kg_fault_end(&g);
    return done;
}

kg_status kg_writer_tick(kg_writer *w) {
    if (w->broken) return w->broken;
    uint64_t now = kg_mono_ns();
    if (now - w->last_heartbeat_ns < KG_HEARTBEAT_PERIOD_NS / 4) return KG_OK;
    GUARDED(w, return KG_TRUNCATED);
    kg_store_release64(&w->hdr->heartbeat_mono_ns, now);
    kg_store_release64(&w->hdr->heartbeat_unix_ns, kg_unix_ns());
    kg_fault_end(&g);
    w->last_heartbeat_ns = now;
    return KG_OK;
}

kg_status kg_writer_counters(kg_writer *w, uint64_t *dropped, uint64_t *truncated) {
    if (w->broken) return w->broken;
    GUARDED(w, return KG_TRUNCATED);
    *dropped = kg_load_relaxed64(&w->hdr->writer_dropped);
    *truncated = kg_load_relaxed64(&w->hdr->writer_truncated);
    kg_fault_end(&g);
    return KG_OK;
}

static void close_guarded(kg_writer *w) {
    kg_header *h = w->hdr;
    kg_store_release32(&h->state, KG_STATE_CLOSED);
    kg_fetch_add_seqcst32(&h->wake_seq, 1);
    kg_futex_wake_all(&h->wake_seq);
}

void kg_writer_close(kg_writer *w) {
    if (!w->hdr) return;
    {   /* even when broken: if the header page is still there, readers learn at once */
        GUARDED(w, goto unmap);
        close_guarded(w);
        kg_fault_end(&g);
    }
unmap:
    kg_unmap(&w->map);
    kg_lock_release(w->lock);
    w->lock = -1;
    w->hdr = NULL;
}
