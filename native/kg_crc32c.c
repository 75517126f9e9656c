/* kg_crc32c.c - CRC-32C (Castagnoli), as the ring's slots and header use it.
 *
 * Reflected polynomial 0x82F63B78, init and xor-out 0xFFFFFFFF;
 * "123456789" -> 0xE3069283 (checked by tests/integration/test_native.py).
 * x86-64 with SSE4.2 and arm64 with the CRC extension use the CPU instruction
 * (chosen once at run time on x86-64); everything else uses a byte table.
 */
#include <string.h>

#include "kg_ring.h"

static uint32_t table[256];
static int table_ready;

static void build_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        table[i] = c;
    }
    table_ready = 1; /* benign race: every thread computes the same table */
}

uint32_t kg_crc32c_table(uint32_t crc, const void *data, size_t len) {
    if (!table_ready) build_table();
    const uint8_t *p = data;
    crc = ~crc;
    while (len--) crc = table[(crc ^ *p++) & 0xFFu] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define KG_CRC_HW_X86 1

__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t crc, const void *data, size_t len) {
    const uint8_t *p = data;
    uint64_t c = ~crc;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--) c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}

static int hw_state; /* 0 unknown, 1 yes, -1 no */

static int have_sse42(void) {
    if (!hw_state) {
        __builtin_cpu_init();
        hw_state = __builtin_cpu_supports("sse4.2") ? 1 : -1;
    }
    return hw_state > 0;
}

int kg_crc32c_is_hardware(void) { return have_sse42(); }

uint32_t kg_crc32c(uint32_t crc, const void *data, size_t len) {
    return have_sse42() ? crc_sse42(crc, data, len) : kg_crc32c_table(crc, data, len);
}

#elif defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)
#include <arm_acle.h>

int kg_crc32c_is_hardware(void) { return 1; }

uint32_t kg_crc32c(uint32_t crc, const void *data, size_t len) {
    const uint8_t *p = data;
    crc = ~crc;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        crc = __crc32cd(crc, v);
        p += 8;
        len -= 8;
    }
    while (len--) crc = __crc32cb(crc, *p++);
    return ~crc;
}

#else

int kg_crc32c_is_hardware(void) { return 0; }

uint32_t kg_crc32c(uint32_t crc, const void *data, size_t len) { return kg_crc32c_table(crc, data, len); }

#endif
