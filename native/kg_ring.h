/* kg_ring.h - the KindlyGuard threat ring v2: one writer, any number of readers.
 *
 * kg_writer.c  creates the file (temp + rename, exclusive lock) and publishes.
 * kg_reader.c  attaches after every health check and reads batches from a
 *              cursor into the caller's buffer, counting missed and corrupt.
 * kg_wait.c    the reader's wait: spin with the CPU pause, then a shared futex
 *              (Linux) or a timed back-off (elsewhere).
 * kg_crc32c.c  CRC-32C, hardware instruction where the CPU has it.
 * kg_hist.c    a fixed-size log-linear latency histogram.
 * kg_fault.c   the SIGBUS guard: a ring truncated under us is an error
 *              (KG_TRUNCATED), not a crash. Every access to a mapping in
 *              these files runs under it.
 * kg_bench.c   the benchmark's paced writer and bare reader (kg_bench.h).
 * No Python in any of them; kgpy.h, py_*.c and kgmon_ring_module.c are the
 * CPython binding.
 */
#ifndef KG_RING_H
#define KG_RING_H

#include <stddef.h>
#include <stdint.h>

#include "kg_hist.h"
#include "kg_layout.h"
#include "kg_platform.h"
#include "kg_status.h"

#define KG_ERRLEN 256

/* ---- CRC-32C (Castagnoli, reflected, init/xorout 0xFFFFFFFF) ---- */
uint32_t kg_crc32c(uint32_t crc, const void *data, size_t len); /* start with crc = 0 */
int kg_crc32c_is_hardware(void);
uint32_t kg_crc32c_table(uint32_t crc, const void *data, size_t len); /* portable path, for tests */

/* ---- one event, as a writer hands it in ---- */
typedef struct kg_event_in {
    uint64_t timestamp_unix_us;
    uint32_t threat_type;
    uint8_t severity; /* 1..4 */
    uint8_t blocked;  /* 0/1 */
    const char *source;
    size_t source_len;
    const char *details;
    size_t details_len;
} kg_event_in;

/* ---- writer ---- */
typedef struct kg_writer {
    kg_mapping map;
    kg_header *hdr;
    uint8_t *slots;
    uint32_t slot_size, slot_mask;
    uint64_t next;            /* next event number */
    uint64_t last_heartbeat_ns;
    uint64_t generation;
    kg_status broken;         /* KG_TRUNCATED once the file shrank under us: publish nothing more */
    intptr_t lock;
    char path[1024];
} kg_writer;

kg_status kg_writer_create(kg_writer *w, const char *path, uint32_t slot_size, uint32_t slot_count,
                           char *err, size_t errlen);
/* Publish n events as one batch (one write_seq store, one wake). Invalid ones
 * (severity not 1..4) are refused and counted in writer_dropped. Returns how
 * many were published; 0 and w->broken = KG_TRUNCATED if the file was
 * truncated under the writer (then nothing of the batch was published). */
size_t kg_writer_publish(kg_writer *w, const kg_event_in *events, size_t n);
/* Refresh the heartbeat if 'at least every 500 ms' is due (cheap to call often).
 * KG_OK, or KG_TRUNCATED. */
kg_status kg_writer_tick(kg_writer *w);
/* writer_dropped and writer_truncated (KG_TRUNCATED: unknown). */
kg_status kg_writer_counters(kg_writer *w, uint64_t *dropped, uint64_t *truncated);
/* Mark the ring closed, wake every reader, unmap, release the lock. */
void kg_writer_close(kg_writer *w);

/* ---- one event, as a reader hands it out ---- */
typedef struct kg_event {
    uint64_t seq;               /* event number n (identity: generation, n) */
    uint64_t publish_mono_ns;
    uint64_t observe_mono_ns;   /* when this reader copied it, before any GIL */
    uint64_t timestamp_unix_us;
    uint32_t threat_type;       /* unknown values already read as 0 */
    uint8_t severity, blocked, flags, reserved;
    uint16_t source_len, details_len;
    uint32_t text_offset;       /* into the batch's text buffer */
} kg_event;

typedef struct kg_batch {
    kg_event *events;   /* caller's array */
    size_t capacity;
    uint8_t *text;      /* caller's text arena: source then details of each event */
    size_t text_capacity;
    size_t count;       /* out: events delivered */
    uint64_t missed;    /* out: added by this read */
    uint64_t corrupt;   /* out: added by this read */
} kg_batch;

typedef struct kg_reader {
    kg_mapping header_map;  /* first page, read-write (waiters only) */
    kg_mapping slots_map;   /* the whole file, read-only */
    kg_header *hdr;
    const uint8_t *slots;
    uint32_t slot_size, slot_count, slot_mask;
    uint64_t generation;
    uint32_t writer_pid;
    uint64_t cursor;
    uint64_t delivered, missed, corrupt;
    kg_hist *transport;     /* optional: publish -> observe deltas recorded here */
    uint64_t opened_mono_ns; /* events published before this are replayed history, not latency samples */
    uint64_t file_length;    /* what the file must keep being */
    uint64_t seen_write_seq; /* write_seq at the last read: what a truncation makes missed */
    uint64_t epoch_mono_ns;  /* newest publish stamp read: a reset's new events are newer */
    uint64_t resets;         /* times write_seq went backwards (each a new epoch) */
    uint64_t hb_value, hb_changed_ns; /* the heartbeat, and when (our clock) it last changed */
    kg_status broken;        /* KG_TRUNCATED: the file shrank; nothing is read from it again */
    char path[1024];
} kg_reader;

/* The header's live fields, read at once. */
typedef struct kg_vitals {
    uint64_t write_seq, heartbeat_mono_ns, heartbeat_unix_ns, writer_dropped, writer_truncated;
    uint32_t state;
} kg_vitals;

enum kg_start { KG_START_OLDEST = 0, KG_START_NEWEST = 1 };

kg_status kg_reader_open(kg_reader *r, const char *path, int start, char *err, size_t errlen);
void kg_reader_close(kg_reader *r);
/* Continue from event n of this generation (after another transport brought
 * the events before it). Past write_seq it stops at write_seq; events before
 * n that the ring no longer holds are counted as missed by the next read. */
void kg_reader_seek(kg_reader *r, uint64_t n);
/* Copy up to b->capacity events from the cursor. Never blocks. KG_OK, or
 * KG_TRUNCATED (the file shrank: b holds what was read before, b->missed
 * counts the rest the header had promised; every later call says so again).
 * A write_seq below the cursor is a reset (a new epoch): reading goes on
 * from the reset's first event the ring still holds, told from older
 * events by its publish stamp; see docs/shm-ring-v2.md. */
kg_status kg_reader_read(kg_reader *r, kg_batch *b);
/* Is the ring still worth reading? KG_OK, KG_STALE, KG_CLOSED, KG_REPLACED,
 * KG_BAD_HEADER (state out of range) or KG_TRUNCATED. */
kg_status kg_reader_health(kg_reader *r, uint64_t now_mono_ns);
/* How long the writer has shown no sign of life, by our clock: the
 * heartbeat's own age when it is in the past, else (a heartbeat ahead of our
 * clock by more than KG_CLOCK_TOLERANCE_NS proves nothing) how long it has
 * not changed. UINT64_MAX once truncated. */
uint64_t kg_reader_heartbeat_age(kg_reader *r, uint64_t now_mono_ns);
/* The file shrank (a fault, or a size check): mark the reader broken and
 * count what it had not read as missed. Returns KG_TRUNCATED. */
kg_status kg_reader_truncated(kg_reader *r);
/* The header's live fields: KG_OK or KG_TRUNCATED. */
kg_status kg_reader_vitals(kg_reader *r, kg_vitals *v);
/* write_seq (the last one seen if the ring was truncated). */
uint64_t kg_reader_write_seq(kg_reader *r);

/* ---- waiting ---- */
typedef struct kg_wait {
    uint64_t spin_ns;       /* current spin budget */
    uint64_t spin_max_ns;   /* adaptive: never more than this; fixed: this */
    int adaptive;           /* grow the spin when it pays, shrink it when it does not */
    uint64_t sleep_ns;      /* longest single sleep (spec: 100 ms) */
    uint64_t spins_won, sleeps; /* statistics */
    volatile int *stop;     /* optional: a non-zero value ends the wait */
} kg_wait;

void kg_wait_init(kg_wait *w, uint64_t spin_ns, int adaptive);
/* Wait until the ring has an event after r->cursor, the ring is closed, *stop
 * is set, or timeout_ns passes. KG_OK (data), KG_TIMEOUT, KG_CLOSED or
 * KG_TRUNCATED. A header in any other state sleeps like a quiet one. */
kg_status kg_wait_for_data(kg_reader *r, kg_wait *w, uint64_t timeout_ns);

#endif
