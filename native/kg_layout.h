/* kg_layout.h - the bytes of a KindlyGuard shared-memory threat ring, format v2.
 *
 * This header is the single place where docs/shm-ring-v2.md becomes C.
 * Every offset of the spec is checked here with static_assert, so a change that
 * moves a field does not compile. All integers are little-endian; the code
 * refuses to build on a big-endian target rather than write a foreign layout.
 * No Python in here.
 */
#ifndef KG_LAYOUT_H
#define KG_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "KindlyGuard ring v2 is little-endian; a big-endian port must byte-swap every field"
#endif

#define KG_MAGIC 0x4B474D53u /* "KGMS" read as a little-endian u32 */
#define KG_VERSION 2u
#define KG_HEADER_SIZE 4096u
#define KG_SLOT_SIZE_MIN 256u
#define KG_SLOT_SIZE_MAX 65536u
#define KG_SLOT_SIZE_DEFAULT 512u
#define KG_SLOT_COUNT_MIN 16u
#define KG_SLOT_COUNT_MAX 1048576u
#define KG_SLOT_COUNT_DEFAULT 4096u
#define KG_FLAG_CRC32C 1u        /* header flags bit 0: always set in v2 */
#define KG_STATE_RUNNING 1u
#define KG_STATE_CLOSED 2u
#define KG_SOURCE_MAX 64u        /* bytes of source text at most */
#define KG_SLOT_TEXT_OFFSET 40u  /* source, then details, start here in a slot */
#define KG_EVENT_FLAG_SOURCE_TRUNCATED 1u
#define KG_EVENT_FLAG_DETAILS_TRUNCATED 2u
#define KG_HEADER_CRC_LEN 56u    /* header_crc covers bytes 0..55 */
#define KG_SLOT_CRC_FROM 8u      /* slot crc covers bytes 8..35, then the text */
#define KG_SLOT_CRC_HEAD_LEN 28u
#define KG_HEARTBEAT_PERIOD_NS 500000000ull  /* writer: at least this often */
#define KG_HEARTBEAT_STALE_NS 3000000000ull  /* reader: older than this = writer gone */
#define KG_CLOCK_TOLERANCE_NS 1000000000ull  /* reader: a ring clock further ahead of ours is not trusted */

/* Threat types and severities as numbered in the slot. */
enum kg_threat_type {
    KG_THREAT_UNKNOWN = 0,
    KG_THREAT_UNICODE_INVISIBLE = 1,
    KG_THREAT_UNICODE_BIDI = 2,
    KG_THREAT_UNICODE_HOMOGLYPH = 3,
    KG_THREAT_INJECTION_ATTEMPT = 4,
    KG_THREAT_PATH_TRAVERSAL = 5,
    KG_THREAT_SUSPICIOUS_PATTERN = 6,
    KG_THREAT_RATE_LIMIT_VIOLATION = 7,
};
enum kg_severity { KG_SEV_LOW = 1, KG_SEV_MEDIUM = 2, KG_SEV_HIGH = 3, KG_SEV_CRITICAL = 4 };

/* The header page. Line 0 is written once before the rename; each hot field
 * sits alone on its own 128-byte line so the writer's stores to write_seq do
 * not bounce the line a reader writes (waiters). */
typedef struct kg_header {
    uint32_t magic;            /*   0 */
    uint32_t version;          /*   4 */
    uint32_t header_size;      /*   8 */
    uint32_t slot_size;        /*  12 */
    uint32_t slot_count;       /*  16 */
    uint32_t flags;            /*  20 */
    uint64_t generation;       /*  24 */
    uint32_t writer_pid;       /*  32 */
    uint32_t reserved0;        /*  36 */
    uint64_t created_unix_ns;  /*  40 */
    uint64_t reserved1;        /*  48 */
    uint32_t header_crc;       /*  56 */
    uint32_t reserved2;        /*  60 */
    uint8_t pad0[128 - 64];
    uint64_t write_seq;        /* 128, atomic, writer */
    uint8_t pad1[256 - 136];
    uint64_t heartbeat_mono_ns;/* 256, atomic, writer */
    uint64_t heartbeat_unix_ns;/* 264, atomic, writer */
    uint8_t pad2[384 - 272];
    uint32_t wake_seq;         /* 384, atomic, writer: the futex word */
    uint8_t pad3[512 - 388];
    uint32_t waiters;          /* 512, atomic, readers: the only field a reader writes */
    uint8_t pad4[640 - 516];
    uint32_t state;            /* 640, atomic, writer */
    uint8_t pad5[768 - 644];
    uint64_t writer_dropped;   /* 768, atomic, writer */
    uint64_t writer_truncated; /* 776, atomic, writer */
    uint8_t pad6[KG_HEADER_SIZE - 784];
} kg_header;

typedef struct kg_slot {
    uint64_t seq;               /*  0 atomic: 0 never, 2n+1 writing, 2n+2 complete */
    uint64_t publish_mono_ns;   /*  8 */
    uint64_t timestamp_unix_us; /* 16 */
    uint32_t threat_type;       /* 24 */
    uint8_t severity;           /* 28 */
    uint8_t blocked;            /* 29 */
    uint8_t flags;              /* 30 */
    uint8_t reserved;           /* 31 */
    uint16_t source_len;        /* 32 */
    uint16_t details_len;       /* 34 */
    uint32_t crc;               /* 36 */
    uint8_t text[];             /* 40: source then details, UTF-8, no terminator */
} kg_slot;

#define KG_CHECK_OFFSET(type, field, off) \
    _Static_assert(offsetof(type, field) == (off), #type "." #field " must be at " #off)
KG_CHECK_OFFSET(kg_header, magic, 0);
KG_CHECK_OFFSET(kg_header, version, 4);
KG_CHECK_OFFSET(kg_header, header_size, 8);
KG_CHECK_OFFSET(kg_header, slot_size, 12);
KG_CHECK_OFFSET(kg_header, slot_count, 16);
KG_CHECK_OFFSET(kg_header, flags, 20);
KG_CHECK_OFFSET(kg_header, generation, 24);
KG_CHECK_OFFSET(kg_header, writer_pid, 32);
KG_CHECK_OFFSET(kg_header, created_unix_ns, 40);
KG_CHECK_OFFSET(kg_header, header_crc, 56);
KG_CHECK_OFFSET(kg_header, write_seq, 128);
KG_CHECK_OFFSET(kg_header, heartbeat_mono_ns, 256);
KG_CHECK_OFFSET(kg_header, heartbeat_unix_ns, 264);
KG_CHECK_OFFSET(kg_header, wake_seq, 384);
KG_CHECK_OFFSET(kg_header, waiters, 512);
KG_CHECK_OFFSET(kg_header, state, 640);
KG_CHECK_OFFSET(kg_header, writer_dropped, 768);
KG_CHECK_OFFSET(kg_header, writer_truncated, 776);
_Static_assert(sizeof(kg_header) == KG_HEADER_SIZE, "header is one 4096-byte page");
KG_CHECK_OFFSET(kg_slot, seq, 0);
KG_CHECK_OFFSET(kg_slot, publish_mono_ns, 8);
KG_CHECK_OFFSET(kg_slot, timestamp_unix_us, 16);
KG_CHECK_OFFSET(kg_slot, threat_type, 24);
KG_CHECK_OFFSET(kg_slot, severity, 28);
KG_CHECK_OFFSET(kg_slot, blocked, 29);
KG_CHECK_OFFSET(kg_slot, flags, 30);
KG_CHECK_OFFSET(kg_slot, source_len, 32);
KG_CHECK_OFFSET(kg_slot, details_len, 34);
KG_CHECK_OFFSET(kg_slot, crc, 36);
KG_CHECK_OFFSET(kg_slot, text, KG_SLOT_TEXT_OFFSET);

static inline int kg_is_pow2(uint32_t v) { return v && !(v & (v - 1)); }

/* The one check of a ring's geometry (writer before creating, reader on the
 * header): NULL when slot_size and slot_count are allowed, else which is not. */
static inline const char *kg_geometry_problem(uint32_t slot_size, uint32_t slot_count) {
    if (!kg_is_pow2(slot_size) || slot_size < KG_SLOT_SIZE_MIN || slot_size > KG_SLOT_SIZE_MAX)
        return "slot size is not a power of two from 256 to 65536";
    if (!kg_is_pow2(slot_count) || slot_count < KG_SLOT_COUNT_MIN || slot_count > KG_SLOT_COUNT_MAX)
        return "slot count is not a power of two from 16 to 1048576";
    return NULL;
}
_Static_assert(KG_SLOT_SIZE_MIN == 256u && KG_SLOT_SIZE_MAX == 65536u && KG_SLOT_COUNT_MIN == 16u &&
                   KG_SLOT_COUNT_MAX == 1048576u,
               "kg_geometry_problem's sentences name these bounds");

/* Most bytes of details a slot of this size holds (408 for 512-byte slots). */
static inline uint32_t kg_details_max(uint32_t slot_size) {
    return slot_size - KG_SLOT_TEXT_OFFSET - KG_SOURCE_MAX;
}

#endif
