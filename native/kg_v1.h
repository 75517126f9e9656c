/* kg_v1.h - the Shield's own ring, format v1 (what its shm_demo example and
 * ipc/shm.rs write), and a reader that never consumes it.
 *
 * The bytes are those of docs/shm-ring-v1.md ("The format"), every
 * offset static_assert-ed below. v1 has no sequence numbers, no per-event
 * seqlock and no wake-up; a reader here:
 *   - opens the file O_RDONLY and maps it PROT_READ (it cannot write a byte:
 *     read_pos and events_read, the upstream consumer's fields, stay as they are);
 *   - keeps its own cursor (event number n = the events_written value the event
 *     was written at, and its byte offset), following write_pos;
 *   - counts as missed what a lap or a reset took, as corrupt what fails the
 *     checksum or lies across the end of the file (positions wrap at the data
 *     area's size, not at a multiple of 344: upstream writes that event past
 *     the end of its mapping; we never read past ours);
 *   - polls (kg_v1_wait): fast just after an event, backing off when quiet.
 * Liveness (writer_pid, the lock file) is judged in Python (kindlyguard_monitor/ring/v1.py).
 * No Python in here.
 */
#ifndef KG_V1_H
#define KG_V1_H

#include <stddef.h>
#include <stdint.h>

#include "kg_ring.h"

#define KG_V1_VERSION 1u
#define KG_V1_HEADER_SIZE 896u
#define KG_V1_EVENT_SIZE 344u
#define KG_V1_SOURCE_LEN 64u
#define KG_V1_DETAILS_LEN 256u
#define KG_V1_TEXT_MAX (KG_V1_SOURCE_LEN + KG_V1_DETAILS_LEN)
/* Smallest file worth reading: the header and one whole event. */
#define KG_V1_MIN_FILE (KG_V1_HEADER_SIZE + KG_V1_EVENT_SIZE)
/* Adaptive polling: just after an event, look again after this long ... */
#define KG_V1_POLL_MIN_NS 20000ull
/* ... doubling while nothing comes, up to this while events came in the last
 * KG_V1_ACTIVE_NS (events come in runs: the next one is likely soon) ... */
#define KG_V1_POLL_MAX_NS 1500000ull
#define KG_V1_ACTIVE_NS 2000000000ull
/* ... and up to this once quiet for longer (each wake-up costs a few µs of CPU
 * on bare metal, 25-70 µs in a VM: this keeps an idle reader under ~0.2 %). */
#define KG_V1_POLL_IDLE_NS 64000000ull

/* The header, as `#[repr(C)]` with CachePadded (128-byte) fields lays it out
 * on x86_64 (usize = u64). Upstream's writer stores write_pos (Release) and
 * then bumps events_written (Relaxed); nothing else is atomic. */
typedef struct kg_v1_header {
    uint32_t magic;          /*   0: KG_MAGIC */
    uint32_t version;        /*   4: 1 */
    uint64_t total_size;     /*   8: file size the writer chose */
    uint8_t pad0[128 - 16];
    uint64_t write_pos;      /* 128: byte offset in the data area of the next write */
    uint8_t pad1[256 - 136];
    uint64_t read_pos;       /* 256: the upstream CONSUMER's offset (we never touch it) */
    uint8_t pad2[384 - 264];
    uint64_t events_written; /* 384: cumulative, kept across writer restarts */
    uint8_t pad3[512 - 392];
    uint64_t events_read;    /* 512: the upstream consumer's count (we never touch it) */
    uint8_t pad4[640 - 520];
    uint64_t last_heartbeat; /* 640: unix SECONDS, at start and on each write only */
    uint8_t pad5[768 - 648];
    uint32_t writer_pid;     /* 768: the pid that initialised the header (not updated on restart) */
    uint8_t reserved[64];    /* 772 */
    uint8_t pad6[KG_V1_HEADER_SIZE - 836];
} kg_v1_header;

typedef struct kg_v1_event {
    uint64_t timestamp_us;   /*   0: unix microseconds */
    uint32_t threat_type;    /*   8 */
    uint8_t severity;        /*  12: 1..4 */
    uint8_t blocked;         /*  13 */
    uint8_t source[KG_V1_SOURCE_LEN];   /*  14: UTF-8, NUL padded, cut anywhere */
    uint8_t details[KG_V1_DETAILS_LEN]; /*  78 */
    uint8_t pad0[2];         /* 334 */
    uint32_t checksum;       /* 336: wrapping sum, kg_v1_checksum() */
    uint8_t reserved[2];     /* 340 */
    uint8_t pad1[2];         /* 342 */
} kg_v1_event;

KG_CHECK_OFFSET(kg_v1_header, magic, 0);
KG_CHECK_OFFSET(kg_v1_header, version, 4);
KG_CHECK_OFFSET(kg_v1_header, total_size, 8);
KG_CHECK_OFFSET(kg_v1_header, write_pos, 128);
KG_CHECK_OFFSET(kg_v1_header, read_pos, 256);
KG_CHECK_OFFSET(kg_v1_header, events_written, 384);
KG_CHECK_OFFSET(kg_v1_header, events_read, 512);
KG_CHECK_OFFSET(kg_v1_header, last_heartbeat, 640);
KG_CHECK_OFFSET(kg_v1_header, writer_pid, 768);
KG_CHECK_OFFSET(kg_v1_header, reserved, 772);
_Static_assert(sizeof(kg_v1_header) == KG_V1_HEADER_SIZE, "v1 header is 896 bytes");
KG_CHECK_OFFSET(kg_v1_event, timestamp_us, 0);
KG_CHECK_OFFSET(kg_v1_event, threat_type, 8);
KG_CHECK_OFFSET(kg_v1_event, severity, 12);
KG_CHECK_OFFSET(kg_v1_event, blocked, 13);
KG_CHECK_OFFSET(kg_v1_event, source, 14);
KG_CHECK_OFFSET(kg_v1_event, details, 78);
KG_CHECK_OFFSET(kg_v1_event, checksum, 336);
_Static_assert(sizeof(kg_v1_event) == KG_V1_EVENT_SIZE, "v1 event is 344 bytes");

/* The spec's checksum: wrapping u32 sum of (u32)timestamp_us, threat_type,
 * severity, blocked and every byte of source and details. */
uint32_t kg_v1_checksum(const kg_v1_event *e);

typedef struct kg_v1_reader {
    kg_mapping map;          /* the whole file, read-only */
    const kg_v1_header *hdr;
    const uint8_t *data;     /* the data area: hdr + 896 */
    uint64_t data_size;      /* D: positions wrap here */
    uint64_t capacity;       /* events the data area holds whole: floor(D / 344) */
    uint64_t cursor;         /* n of the next event to read */
    uint64_t cursor_pos;     /* its byte offset in the data area */
    /* The event before the cursor, to notice a reset that numbers past us again. */
    int fp_valid;
    uint64_t fp_pos, fp_timestamp;
    uint32_t fp_checksum;
    uint32_t writer_pid;     /* the header's, as last seen: only an initialisation changes it */
    uint64_t last_event_mono_ns; /* when the poll last found an event (the polling's pace) */
    uint64_t delivered, missed, corrupt, resets;
    uint32_t size_problem;   /* the file shrank under us: stop reading (KG_TRUNCATED) */
    kg_hist *transport;      /* optional: publish (from the stored timestamp) -> observed */
    uint64_t opened_mono_ns;
    char path[1024];
} kg_v1_reader;

/* Open read-only after the same file checks as v2 (regular file, owner, mode,
 * directory) and the v1 header's own (magic, version 1, total_size = file size). */
kg_status kg_v1_open(kg_v1_reader *r, const char *path, int start, char *err, size_t errlen);
void kg_v1_close(kg_v1_reader *r);
/* Continue from event n (at most events_written). With fp_timestamp/fp_checksum
 * of event n - 1 as seen before (fp = 1), a ring reset since then is noticed. */
kg_status kg_v1_seek(kg_v1_reader *r, uint64_t n, int fp, uint64_t fp_timestamp, uint32_t fp_checksum);
/* Copy up to b->capacity events from the cursor into b. Never blocks.
 * kg_event.seq is n; publish_mono_ns is derived from the stored timestamp. */
kg_status kg_v1_read(kg_v1_reader *r, kg_batch *b);
/* KG_OK, KG_REPLACED (another file at the path), KG_TRUNCATED (the file shrank) or
 * KG_BAD_VERSION / KG_BAD_MAGIC (the header was rewritten as something else). */
kg_status kg_v1_health(kg_v1_reader *r);
kg_status kg_v1_events_written(const kg_v1_reader *r, uint64_t *out);
/* A copy of the header as it is now (KG_TRUNCATED if the file shrank). */
kg_status kg_v1_header_copy(const kg_v1_reader *r, kg_v1_header *out);
/* Poll until there is an event at the cursor, *stop is set or timeout_ns
 * passes: KG_OK (data) or KG_TIMEOUT. Sleeps min_ns after an event, doubling
 * while nothing comes up to max_ns for KG_V1_ACTIVE_NS after the last event,
 * then up to idle_ns (w->spin_ns holds the current step). */
kg_status kg_v1_wait(kg_v1_reader *r, kg_wait *w, uint64_t timeout_ns, uint64_t min_ns, uint64_t max_ns,
                     uint64_t idle_ns);

#endif
