/* selftest.c - the ring library on its own, no Python: a writer thread and a
 * reader thread on one ring, plus the spec's fixed points. Built and run by
 * tests/test_c_library.py (also under AddressSanitizer/UBSan) and
 * cross-compiled for Windows in CI to prove the win32 path builds.
 *
 *   selftest DIR   -> exit 0 and "ok" when every check passed
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kg_atomic.h"
#include "kg_ring.h"

#if !defined(_WIN32)
#include <pthread.h>
#define HAVE_THREADS 1
#else
#define HAVE_THREADS 0
#endif

static int failures;
#define CHECK(cond, ...)                                        \
    do {                                                        \
        if (!(cond)) {                                          \
            failures++;                                         \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                       \
            fprintf(stderr, "\n");                              \
        }                                                       \
    } while (0)

enum { EVENTS = 200000, SLOTS = 64 };

typedef struct {
    const char *path;
    uint64_t start, delivered, missed, corrupt, bad_content;
} reader_args;

static void expect_details(uint64_t n, char *buf, size_t *len) { *len = (size_t)snprintf(buf, 64, "event %llu", (unsigned long long)n); }

static void *reader_main(void *p) {
    reader_args *a = p;
    kg_reader r = {0};
    char err[KG_ERRLEN];
    if (kg_reader_open(&r, a->path, KG_START_OLDEST, err, sizeof err) != KG_OK) {
        fprintf(stderr, "reader open: %s\n", err);
        a->bad_content = 1;
        return NULL;
    }
    a->start = r.cursor; /* events before it were gone before we came: not ours to count */
    static kg_event events[256];
    static uint8_t text[256 * 512];
    kg_batch b = {.events = events, .capacity = 256, .text = text, .text_capacity = sizeof text};
    kg_wait w;
    kg_wait_init(&w, 20000, 1);
    while (r.delivered + r.missed + r.corrupt < EVENTS - a->start) {
        kg_reader_read(&r, &b);
        for (size_t i = 0; i < b.count; i++) {
            char want[64];
            size_t want_len;
            expect_details(events[i].seq, want, &want_len);
            const char *got = (const char *)text + events[i].text_offset + events[i].source_len;
            if (events[i].details_len != want_len || memcmp(got, want, want_len) != 0) a->bad_content++;
        }
        if (!b.count && !b.missed && !b.corrupt && kg_wait_for_data(&r, &w, 2000000000ull) != KG_OK) break;
    }
    a->delivered = r.delivered;
    a->missed = r.missed;
    a->corrupt = r.corrupt;
    kg_reader_close(&r);
    return NULL;
}

static void fixed_points(void) {
    CHECK(kg_crc32c(0, "123456789", 9) == 0xE3069283u, "crc32c vector: %08x", kg_crc32c(0, "123456789", 9));
    CHECK(kg_crc32c_table(0, "123456789", 9) == 0xE3069283u, "crc32c table vector");
    uint32_t part = kg_crc32c(0, "1234", 4);
    CHECK(kg_crc32c(part, "56789", 5) == 0xE3069283u, "crc32c incremental");
    CHECK(kg_details_max(512) == 408, "details max for 512-byte slots");
    kg_hist h;
    kg_hist_reset(&h);
    for (uint64_t v = 1; v <= 100000; v++) kg_hist_record(&h, v);
    uint64_t p50 = kg_hist_percentile(&h, 50);
    CHECK(p50 >= 50000 && p50 <= 51600, "hist p50 %llu", (unsigned long long)p50);
    CHECK(kg_hist_percentile(&h, 100) == 100000, "hist p100");
    for (uint64_t v = 0; v < (1ull << 40); v = v * 3 + 1) {
        unsigned i = kg_hist_index(v);
        CHECK(kg_hist_bucket_low(i) <= v && v <= kg_hist_bucket_high(i), "bucket of %llu", (unsigned long long)v);
    }
}

static void writer_reader(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/selftest.shm", dir);
    kg_writer w;
    char err[KG_ERRLEN];
    kg_status st = kg_writer_create(&w, path, 512, SLOTS, err, sizeof err);
    CHECK(st == KG_OK, "writer create: %s", err);
    if (st != KG_OK) return;
    kg_writer second;
    CHECK(kg_writer_create(&second, path, 512, SLOTS, err, sizeof err) == KG_LOCKED, "second writer is locked out");

    reader_args a = {.path = path};
#if HAVE_THREADS
    pthread_t t;
    pthread_create(&t, NULL, reader_main, &a);
#endif
    kg_event_in batch[16];
    char details[16][64];
    for (uint64_t n = 0; n < EVENTS;) {
        size_t k = 0;
        for (; k < 16 && n < EVENTS; k++, n++) {
            size_t len;
            expect_details(n, details[k], &len);
            batch[k] = (kg_event_in){.timestamp_unix_us = n, .threat_type = (uint32_t)(n % 8),
                                     .severity = (uint8_t)(1 + n % 4), .blocked = (uint8_t)(n & 1),
                                     .source = "selftest", .source_len = 8, .details = details[k],
                                     .details_len = len};
        }
        CHECK(kg_writer_publish(&w, batch, k) == k, "publish");
    }
#if HAVE_THREADS
    pthread_join(t, NULL);
#else
    reader_main(&a);
#endif
    CHECK(a.bad_content == 0, "%llu events with wrong content (torn?)", (unsigned long long)a.bad_content);
    CHECK(a.corrupt == 0, "%llu corrupt", (unsigned long long)a.corrupt);
    CHECK(a.delivered + a.missed == EVENTS - a.start || !HAVE_THREADS, "accounted %llu of %llu",
          (unsigned long long)(a.delivered + a.missed), (unsigned long long)(EVENTS - a.start));
    kg_writer_close(&w);
    printf("threaded: from event %llu, %llu delivered, %llu missed of %d\n", (unsigned long long)a.start,
           (unsigned long long)a.delivered, (unsigned long long)a.missed, EVENTS);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: selftest DIR (a private 0700 directory)\n");
        return 2;
    }
    fixed_points();
    writer_reader(argv[1]);
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
