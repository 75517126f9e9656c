/* kg_reader.c - attach to a ring after every health check of the spec, and
 * read batches from a cursor ("Reading from cursor r"). A reader writes
 * nothing to the ring but the `waiters` count (kg_wait.c). */
#include <stdio.h>
#include <string.h>

#include "kg_atomic.h"
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

kg_status kg_reader_open(kg_reader *r, const char *path, int start, char *err, size_t errlen) {
    kg_hist *transport = r->transport; /* the caller may have set it before opening */
    memset(r, 0, sizeof *r);
    r->transport = transport;
    r->header_map.handle = r->slots_map.handle = -1;
    if (strlen(path) >= sizeof r->path) FAIL(KG_INVALID, "path too long");
    snprintf(r->path, sizeof r->path, "%s", path);

    uint64_t file_size = 0;
    kg_status st = kg_map_open_checked(path, KG_HEADER_SIZE, &file_size, &r->header_map, err, errlen);
    if (st != KG_OK) {
        kg_reader_close(r);
        return st;
    }
    kg_header *h = r->header_map.base;
    /* Acquire pairs with the writer's release store of magic, written last. */
    uint32_t magic = kg_load_acquire32(&h->magic);
    if (magic != KG_MAGIC) FAIL(KG_BAD_MAGIC, "magic 0x%08X, expected 0x%08X", magic, KG_MAGIC);
    if (h->version != KG_VERSION) FAIL(KG_BAD_VERSION, "version %u", h->version);
    uint32_t crc = kg_crc32c(0, h, KG_HEADER_CRC_LEN);
    if (crc != h->header_crc) FAIL(KG_BAD_HEADER, "header CRC 0x%08X, computed 0x%08X", h->header_crc, crc);
    if (h->header_size != KG_HEADER_SIZE) FAIL(KG_BAD_HEADER, "header_size %u", h->header_size);
    if (!(h->flags & KG_FLAG_CRC32C)) FAIL(KG_BAD_HEADER, "flags 0x%X lack the CRC bit", h->flags);
    uint32_t slot_size = h->slot_size, slot_count = h->slot_count;
    if (!kg_is_pow2(slot_size) || slot_size < KG_SLOT_SIZE_MIN || slot_size > KG_SLOT_SIZE_MAX)
        FAIL(KG_BAD_HEADER, "slot_size %u", slot_size);
    if (!kg_is_pow2(slot_count) || slot_count < KG_SLOT_COUNT_MIN || slot_count > KG_SLOT_COUNT_MAX)
        FAIL(KG_BAD_HEADER, "slot_count %u", slot_count);
    if (h->generation == 0) FAIL(KG_BAD_HEADER, "generation 0");
    uint64_t expect = (uint64_t)KG_HEADER_SIZE + (uint64_t)slot_count * slot_size;
    if (file_size != expect)
        FAIL(KG_BAD_SIZE, "file is %llu bytes, header says %llu", (unsigned long long)file_size,
             (unsigned long long)expect);
    uint32_t state = kg_load_acquire32(&h->state);
    if (state == KG_STATE_CLOSED) FAIL(KG_CLOSED, "state closed");
    if (state != KG_STATE_RUNNING) FAIL(KG_BAD_HEADER, "state %u", state);
    uint64_t hb = kg_load_acquire64(&h->heartbeat_mono_ns), now = kg_mono_ns();
    if (now > hb && now - hb > KG_HEARTBEAT_STALE_NS)
        FAIL(KG_STALE, "last heartbeat %.1f s ago, writer pid %u", (double)(now - hb) / 1e9, h->writer_pid);

    st = kg_map_whole_readonly(&r->header_map, (size_t)expect, &r->slots_map, err, errlen);
    if (st != KG_OK) {
        kg_reader_close(r);
        return st;
    }
    r->hdr = h;
    r->slots = (const uint8_t *)r->slots_map.base + KG_HEADER_SIZE;
    r->slot_size = slot_size;
    r->slot_count = slot_count;
    r->slot_mask = slot_count - 1;
    r->generation = h->generation;
    r->opened_mono_ns = now;
    r->writer_pid = h->writer_pid;
    uint64_t w = kg_load_acquire64(&h->write_seq);
    r->cursor = (start == KG_START_NEWEST) ? w : (w > slot_count ? w - slot_count : 0);
    return KG_OK;
}

uint64_t kg_reader_write_seq(const kg_reader *r) { return kg_load_acquire64(&r->hdr->write_seq); }

void kg_reader_seek(kg_reader *r, uint64_t n) {
    uint64_t w = kg_reader_write_seq(r);
    r->cursor = n < w ? n : w;
}

kg_status kg_reader_health(kg_reader *r, uint64_t now) {
    if (kg_load_acquire32(&r->hdr->state) == KG_STATE_CLOSED) return KG_CLOSED;
    uint64_t hb = kg_load_acquire64(&r->hdr->heartbeat_mono_ns);
    if (now > hb && now - hb > KG_HEARTBEAT_STALE_NS) return KG_STALE;
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

kg_status kg_reader_read(kg_reader *r, kg_batch *b) {
    b->count = 0;
    b->missed = b->corrupt = 0;
    uint64_t w = kg_load_acquire64(&r->hdr->write_seq);
    uint64_t cur = r->cursor;
    size_t text_used = 0;
    const size_t max_text = r->slot_size - KG_SLOT_TEXT_OFFSET;
    /* A local copy of the slot being read: the ring may change under us, the
     * copy cannot. Aligned for the u64 fields. */
    _Alignas(8) uint8_t copy[KG_SLOT_SIZE_MAX];
    const kg_slot *c = (const kg_slot *)copy;
    /* Every event below w was published before this load: stamp the moment
     * this reader observed them now, in C, before any GIL is taken. */
    const uint64_t observed = cur < w ? kg_mono_ns() : 0;

    while (cur < w && b->count < b->capacity && text_used + max_text <= b->text_capacity) {
        if (w - cur > r->slot_count) { /* lapped: the oldest still held is w - slot_count */
            b->missed += (w - r->slot_count) - cur;
            cur = w - r->slot_count;
        }
        const kg_slot *s = (const kg_slot *)(r->slots + (size_t)(cur & r->slot_mask) * r->slot_size);
        /* Acquire pairs with the writer's release store of the even mark. */
        uint64_t s1 = kg_load_acquire64(&s->seq);
        if (s1 != 2 * cur + 2) { /* overwritten by a later lap (or being rewritten) */
            b->missed++;
            cur++;
            continue;
        }
        /* Copy the head, then only the text bytes the (possibly torn) lengths
         * claim, bounded by the slot. */
        memcpy(copy, s, KG_SLOT_TEXT_OFFSET);
        size_t text = (size_t)c->source_len + c->details_len;
        if (text > max_text) text = max_text;
        memcpy(copy + KG_SLOT_TEXT_OFFSET, s->text, text);
        /* Pairs with the writer's fence(release) after the odd mark: if any
         * byte we copied was being rewritten, this load sees seq != s1. */
        kg_fence_acquire();
        if (kg_load_relaxed64(&s->seq) != s1) {
            b->missed++;
            cur++;
            continue;
        }
        if (!slot_valid(c, r->slot_size)) {
            b->corrupt++;
            cur++;
            continue;
        }
        kg_event *e = &b->events[b->count++];
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
        if (r->transport && c->publish_mono_ns >= r->opened_mono_ns) { /* not replayed history */
            uint64_t pub = c->publish_mono_ns;
            kg_hist_record(r->transport, observed > pub ? observed - pub : 0);
        }
        cur++;
    }
    r->cursor = cur;
    r->delivered += b->count;
    r->missed += b->missed;
    r->corrupt += b->corrupt;
    return KG_OK;
}
