/* selftest.c - the ring library on its own, no Python: a writer thread and two
 * reader threads on one ring, a lapped reader's exact missed count, the wait
 * path (a reader asleep, woken by a publish, by close; a timeout), a second
 * writer locked out, a writer restart seen as a replaced ring, plus the spec's
 * fixed points. Built and run by tests/integration/test_c_library.py: natively (also under
 * AddressSanitizer/UBSan) and, cross-compiled with mingw-w64, under Wine, so
 * kg_platform_win32.c runs the same checks as kg_platform_posix.c.
 *
 *   selftest DIR   -> exit 0 and "ok" when every check passed
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kg_atomic.h"
#include "kg_reader_batch.h"
#include "kg_ring.h"

/* Threads: pthreads on POSIX, CreateThread on Windows (the ring's own code has none). */
typedef void *(*thread_fn)(void *);
#if defined(_WIN32)
#include <windows.h>
typedef struct { thread_fn fn; void *arg; HANDLE h; } thread_t;
static DWORD WINAPI trampoline(LPVOID p) {
    thread_t *t = p;
    t->fn(t->arg);
    return 0;
}
static int thread_start(thread_t *t, thread_fn fn, void *arg) {
    t->fn = fn;
    t->arg = arg;
    t->h = CreateThread(NULL, 0, trampoline, t, 0, NULL);
    return t->h != NULL;
}
static void thread_join(thread_t *t) {
    WaitForSingleObject(t->h, INFINITE);
    CloseHandle(t->h);
}
#else
#include <pthread.h>
typedef struct { pthread_t t; } thread_t;
static int thread_start(thread_t *t, thread_fn fn, void *arg) { return pthread_create(&t->t, NULL, fn, arg) == 0; }
static void thread_join(thread_t *t) { pthread_join(t->t, NULL); }
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
    uint32_t opened;  /* set once attached: the writer starts when both readers are */
} reader_args;

static void expect_details(uint64_t n, char *buf, size_t *len) { *len = (size_t)snprintf(buf, 64, "event %llu", (unsigned long long)n); }

static void *reader_main(void *p) {
    reader_args *a = p;
    kg_reader r = {0};
    char err[KG_ERRLEN];
    if (kg_reader_open(&r, a->path, KG_START_OLDEST, err, sizeof err) != KG_OK) {
        fprintf(stderr, "reader open: %s\n", err);
        a->bad_content = 1;
        kg_store_release32(&a->opened, 1);
        return NULL;
    }
    a->start = r.cursor; /* events before it were gone before we came: not ours to count */
    kg_store_release32(&a->opened, 1);
    kg_batch b;
    if (!kg_batch_alloc(&b, 256, 512)) {
        fprintf(stderr, "reader: out of memory\n");
        a->bad_content = 1;
        kg_reader_close(&r);
        return NULL;
    }
    const kg_event *events = b.events;
    const uint8_t *text = b.text;
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
    kg_reader_finish(&r, &b, &a->delivered, &a->missed, &a->corrupt);
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

    reader_args a[2] = {{.path = path}, {.path = path}};
    thread_t t[2];
    for (int i = 0; i < 2; i++) CHECK(thread_start(&t[i], reader_main, &a[i]), "start reader thread %d", i);
    for (int i = 0; i < 2; i++)
        while (!kg_load_acquire32(&a[i].opened)) kg_yield();
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
        kg_writer_tick(&w);
    }
    for (int i = 0; i < 2; i++) {
        thread_join(&t[i]);
        CHECK(a[i].bad_content == 0, "reader %d: %llu events with wrong content (torn?)", i,
              (unsigned long long)a[i].bad_content);
        CHECK(a[i].corrupt == 0, "reader %d: %llu corrupt", i, (unsigned long long)a[i].corrupt);
        CHECK(a[i].delivered + a[i].missed == EVENTS - a[i].start, "reader %d: accounted %llu of %llu", i,
              (unsigned long long)(a[i].delivered + a[i].missed), (unsigned long long)(EVENTS - a[i].start));
        CHECK(a[i].delivered > 0, "reader %d delivered nothing", i);
    }
    kg_writer_close(&w);
    for (int i = 0; i < 2; i++)
        printf("threaded reader %d: from event %llu, %llu delivered, %llu missed of %d\n", i,
               (unsigned long long)a[i].start, (unsigned long long)a[i].delivered, (unsigned long long)a[i].missed,
               EVENTS);
}

static size_t publish_numbered(kg_writer *w, uint64_t from, uint64_t count) {
    size_t done = 0;
    char details[64];
    for (uint64_t n = from; n < from + count; n++) {
        size_t len;
        expect_details(n, details, &len);
        kg_event_in e = {.timestamp_unix_us = n, .threat_type = 1, .severity = 2, .source = "selftest",
                         .source_len = 8, .details = details, .details_len = len};
        done += kg_writer_publish(w, &e, 1);
    }
    return done;
}

/* Read everything there is now; check each event's content is its number's. */
static size_t read_all(kg_reader *r, uint64_t *first, uint64_t *last) {
    static kg_event events[64];
    static uint8_t text[64 * 512];
    kg_batch b = {.events = events, .capacity = 64, .text = text, .text_capacity = sizeof text};
    size_t total = 0;
    do {
        kg_reader_read(r, &b);
        for (size_t i = 0; i < b.count; i++) {
            char want[64];
            size_t want_len;
            expect_details(events[i].seq, want, &want_len);
            CHECK(events[i].details_len == want_len &&
                      memcmp(text + events[i].text_offset + events[i].source_len, want, want_len) == 0,
                  "event %llu has another's text", (unsigned long long)events[i].seq);
            if (total + i == 0 && first) *first = events[i].seq;
            if (last) *last = events[i].seq;
        }
        total += b.count;
    } while (b.count || b.missed || b.corrupt);
    return total;
}

/* A reader that falls three laps behind counts exactly what it lost, then keeps up. */
static void lapped(const char *dir) {
    char path[1024], err[KG_ERRLEN];
    snprintf(path, sizeof path, "%s/lapped.shm", dir);
    kg_writer w;
    kg_status st = kg_writer_create(&w, path, 512, SLOTS, err, sizeof err);
    CHECK(st == KG_OK, "lapped: writer create: %s", err);
    if (st != KG_OK) return;
    kg_reader r = {0};
    st = kg_reader_open(&r, path, KG_START_OLDEST, err, sizeof err);
    CHECK(st == KG_OK, "lapped: reader open: %s", err);
    if (st != KG_OK) {
        kg_writer_close(&w);
        return;
    }
    const uint64_t total = 3 * SLOTS + 10;
    CHECK(publish_numbered(&w, 0, total) == total, "lapped: publish");
    uint64_t first = 0, last = 0;
    size_t got = read_all(&r, &first, &last);
    CHECK(got == SLOTS, "lapped: %zu delivered, want %d (the ring's size)", got, SLOTS);
    CHECK(r.missed == total - SLOTS, "lapped: missed %llu, want %llu", (unsigned long long)r.missed,
          (unsigned long long)(total - SLOTS));
    CHECK(first == total - SLOTS && last == total - 1, "lapped: delivered %llu..%llu", (unsigned long long)first,
          (unsigned long long)last);
    CHECK(publish_numbered(&w, total, 5) == 5, "lapped: publish more");
    got = read_all(&r, &first, &last);
    CHECK(got == 5 && first == total && last == total + 4 && r.missed == total - SLOTS && r.corrupt == 0,
          "lapped: then keeps up (%zu, %llu..%llu)", got, (unsigned long long)first, (unsigned long long)last);
    CHECK(kg_reader_health(&r, kg_mono_ns()) == KG_OK, "lapped: healthy while the writer runs");
    kg_writer_close(&w);
    CHECK(kg_reader_health(&r, kg_mono_ns()) == KG_CLOSED, "lapped: closed after the writer closed");
    kg_reader_close(&r);
    printf("lapped: %llu missed of %llu, exactly\n", (unsigned long long)(total - SLOTS), (unsigned long long)total);
}

typedef struct {
    kg_reader *r;
    kg_wait w;
    uint32_t entered;
    kg_status st;
} waiter_args;

static void *waiter_main(void *p) {
    waiter_args *a = p;
    kg_store_release32(&a->entered, 1);
    a->st = kg_wait_for_data(a->r, &a->w, 60000000000ull); /* 60 s: only a failure waits that long */
    return NULL;
}

/* Wait until a waiter thread is asleep (not spinning, not yet started). */
static void until_asleep(waiter_args *a) {
    while (!kg_load_acquire32(&a->entered)) kg_yield();
    while (kg_load_relaxed64(&a->w.sleeps) == 0) kg_yield();
#if KG_HAVE_SHARED_FUTEX
    while (kg_load_seqcst32(&a->r->hdr->waiters) == 0) kg_yield(); /* announced: the writer must wake it */
#endif
}

/* The wait path: a timeout with nothing to read, a sleeping reader woken by a
 * publish, and by the writer closing the ring. */
static void wait_path(const char *dir) {
    char path[1024], err[KG_ERRLEN];
    snprintf(path, sizeof path, "%s/wait.shm", dir);
    kg_writer w;
    kg_status st = kg_writer_create(&w, path, 512, SLOTS, err, sizeof err);
    CHECK(st == KG_OK, "wait: writer create: %s", err);
    if (st != KG_OK) return;
    kg_reader r = {0};
    st = kg_reader_open(&r, path, KG_START_NEWEST, err, sizeof err);
    CHECK(st == KG_OK, "wait: reader open: %s", err);
    if (st != KG_OK) {
        kg_writer_close(&w);
        return;
    }
    kg_wait quick;
    kg_wait_init(&quick, 0, 0);
    CHECK(kg_wait_for_data(&r, &quick, 20000000ull) == KG_TIMEOUT, "wait: nothing to read times out");

    waiter_args a = {.r = &r};
    kg_wait_init(&a.w, 0, 0); /* no spin: straight to the sleep (futex or back-off) */
    thread_t t;
    CHECK(thread_start(&t, waiter_main, &a), "wait: start thread");
    until_asleep(&a);
    CHECK(publish_numbered(&w, 0, 1) == 1, "wait: publish");
    thread_join(&t);
    CHECK(a.st == KG_OK, "wait: a publish wakes the sleeping reader (status %d)", (int)a.st);
    uint64_t first = 99, last = 99;
    CHECK(read_all(&r, &first, &last) == 1 && first == 0, "wait: and it reads the event");

    waiter_args b = {.r = &r};
    kg_wait_init(&b.w, 0, 0);
    CHECK(thread_start(&t, waiter_main, &b), "wait: start thread");
    until_asleep(&b);
    kg_writer_close(&w);
    thread_join(&t);
    CHECK(b.st == KG_CLOSED, "wait: closing the ring wakes the sleeping reader (status %d)", (int)b.st);
    kg_reader_close(&r);
    printf("wait: timeout, woken by a publish, woken by close\n");
}

/* One writer per ring (the lock), and a restarted writer replaces the file
 * under a reader that still maps the old one. */
static void lock_and_restart(const char *dir) {
    char path[1024], err[KG_ERRLEN];
    snprintf(path, sizeof path, "%s/restart.shm", dir);
    kg_writer w1, w2;
    kg_status st = kg_writer_create(&w1, path, 512, SLOTS, err, sizeof err);
    CHECK(st == KG_OK, "restart: writer create: %s", err);
    if (st != KG_OK) return;
    CHECK(kg_writer_create(&w2, path, 512, SLOTS, err, sizeof err) == KG_LOCKED, "restart: a second writer is locked out");
    CHECK(publish_numbered(&w1, 0, 3) == 3, "restart: publish");
    kg_reader r = {0};
    st = kg_reader_open(&r, path, KG_START_OLDEST, err, sizeof err);
    CHECK(st == KG_OK, "restart: reader open: %s", err);
    if (st != KG_OK) {
        kg_writer_close(&w1);
        return;
    }
    CHECK(read_all(&r, NULL, NULL) == 3, "restart: the first generation's events");
    uint64_t gen1 = r.generation;
    kg_writer_close(&w1);
    st = kg_writer_create(&w2, path, 512, SLOTS, err, sizeof err);
    CHECK(st == KG_OK, "restart: a new writer after the first closed (the lock is free): %s", err);
    if (st == KG_OK) {
        CHECK(kg_reader_health(&r, kg_mono_ns()) == KG_REPLACED || kg_reader_health(&r, kg_mono_ns()) == KG_CLOSED,
              "restart: the old ring is closed or replaced");
        kg_reader r2 = {0};
        st = kg_reader_open(&r2, path, KG_START_OLDEST, err, sizeof err);
        CHECK(st == KG_OK, "restart: reader opens the new ring: %s", err);
        if (st == KG_OK) {
            CHECK(r2.generation != gen1, "restart: a new generation");
            kg_file_id now;
            CHECK(kg_path_identity(path, &now) == KG_OK &&
                      (now.dev != r.header_map.id.dev || now.ino != r.header_map.id.ino),
                  "restart: the path's identity is the new file's, not the old reader's");
            CHECK(now.dev == r2.header_map.id.dev && now.ino == r2.header_map.id.ino,
                  "restart: ... and the new reader's");
            kg_reader_close(&r2);
        }
        kg_writer_close(&w2);
    }
    kg_reader_close(&r);
    /* Nobody maps the first file now: the next writer's start removes whatever was set aside. */
    st = kg_writer_create(&w1, path, 512, SLOTS, err, sizeof err);
    CHECK(st == KG_OK, "restart: a third writer: %s", err);
    if (st == KG_OK) kg_writer_close(&w1);
    printf("restart: locked out, then replaced\n");
}

#if defined(_WIN32)
#define SEP "\\"
#else
#define SEP "/"
#endif

/* Two rings without an extension in a folder whose name has a dot: each has its
 * own lock (NAME.lock beside it), not one "folder.lock" shared by both. */
static void lock_names(const char *dir) {
    char one[1024], two[1024], err[KG_ERRLEN];
    snprintf(one, sizeof one, "%s" SEP "dotted.dir" SEP "ring", dir);
    snprintf(two, sizeof two, "%s" SEP "dotted.dir" SEP "other", dir);
    kg_writer a, b;
    kg_status st = kg_writer_create(&a, one, 512, SLOTS, err, sizeof err);
    CHECK(st == KG_OK, "lock names: first ring: %s", err);
    if (st != KG_OK) return;
    st = kg_writer_create(&b, two, 512, SLOTS, err, sizeof err);
    CHECK(st == KG_OK, "lock names: a second ring in the same folder has its own lock: %s", err);
    if (st == KG_OK) kg_writer_close(&b);
    kg_writer_close(&a);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: selftest DIR (a private 0700 directory)\n");
        return 2;
    }
    fixed_points();
    writer_reader(argv[1]);
    lapped(argv[1]);
    wait_path(argv[1]);
    lock_and_restart(argv[1]);
    lock_names(argv[1]);
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
