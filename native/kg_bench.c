/* kg_bench.c - the benchmark's paced writer and bare reader (kg_bench.h).
 * Plain C: no Python runs per event in either, so they measure the ring. */
#include "kg_bench.h"
#include "kg_reader_batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DETAILS_MAX 4096u

uint64_t kg_bench_run_paced(kg_writer *w, double rate, uint64_t count, unsigned batch_max, unsigned details_len,
                            kg_status *err) {
    *err = KG_OK;
    if (batch_max < 1 || batch_max > 65536) {
        *err = KG_INVALID;
        return 0;
    }
    char details[DETAILS_MAX];
    if (details_len > DETAILS_MAX) details_len = DETAILS_MAX;
    for (unsigned i = 0; i < details_len; i++) details[i] = (char)('a' + i % 26);
    kg_event_in *evs = calloc(batch_max, sizeof *evs);
    if (!evs) {
        *err = KG_IO;
        return 0;
    }
    for (unsigned i = 0; i < batch_max; i++)
        evs[i] = (kg_event_in){.threat_type = 4, .severity = 3, .blocked = 1, .source = "bench:c-writer",
                               .source_len = 14, .details = details, .details_len = details_len};
    uint64_t done = 0;
    const uint64_t start = kg_mono_ns();
    while (done < count && !w->broken) {
        uint64_t now = kg_mono_ns();
        uint64_t due = rate > 0 ? (uint64_t)((double)(now - start) * rate / 1e9) + 1 : count;
        if (due > count) due = count;
        if (due <= done) {
            kg_writer_tick(w);
            /* Low rates: sleep most of the gap and spin the last 60 us, so each
             * event goes out alone and on time. High rates: nap 20 us and let
             * the due events gather into one batch, as a real writer under load
             * does, instead of burning the core the reader may need. */
            uint64_t next_ns = start + (uint64_t)((double)done * 1e9 / rate);
            if (next_ns > now + 80000) kg_sleep_ns(next_ns - now - 60000);
            else if (rate >= 100000.0) kg_sleep_ns(20000);
            else kg_cpu_relax();
            continue;
        }
        uint64_t n = due - done;
        if (n > batch_max) n = batch_max;
        uint64_t ts = kg_unix_ns() / 1000;
        for (uint64_t i = 0; i < n; i++) evs[i].timestamp_unix_us = ts;
        done += kg_writer_publish(w, evs, (size_t)n);
    }
    free(evs);
    return done;
}

kg_status kg_bench_floor_read(const char *path, uint64_t count, int spin, uint64_t timeout_ns, kg_hist *hist,
                              kg_hist *delivery, kg_floor_result *out, char *err, size_t errlen) {
    enum { CAP = 256 };
    memset(out, 0, sizeof *out);
    kg_reader r = {.transport = hist};
    kg_status st = kg_reader_open(&r, path, KG_START_NEWEST, err, errlen);
    if (st != KG_OK) return st;
    kg_batch b;
    if (!kg_batch_alloc(&b, CAP, (size_t)(r.slot_size - KG_SLOT_TEXT_OFFSET))) {
        kg_reader_close(&r);
        snprintf(err, errlen, "out of memory");
        return KG_IO;
    }
    kg_wait w;
    kg_wait_init(&w, spin ? UINT64_MAX / 4 : 0, 0);
    const uint64_t deadline = kg_mono_ns() + timeout_ns;
    uint64_t cpu0 = kg_thread_cpu_ns(), first = 0, last = 0;
    uint64_t left = 0; /* when the last read or wait ended */
    while (r.delivered + r.missed + r.corrupt < count) {
        uint64_t entered = kg_mono_ns();
        if (left && entered - left > out->max_stall_ns) out->max_stall_ns = entered - left;
        kg_reader_read(&r, &b);
        left = kg_mono_ns();
        for (size_t i = 0; i < b.count; i++) {
            uint64_t pub = b.events[i].publish_mono_ns;
            kg_hist_record(delivery, left > pub ? left - pub : 0);
        }
        if (b.count || b.missed || b.corrupt) {
            last = kg_mono_ns();
            if (!first) {
                first = last;
                cpu0 = kg_thread_cpu_ns();
            }
            continue;
        }
        uint64_t now = kg_mono_ns();
        if (now >= deadline) break;
        kg_status ws = kg_wait_for_data(&r, &w, deadline - now);
        if (ws == KG_CLOSED || ws == KG_TRUNCATED) break;
        left = 0; /* a read follows a wait at once */
    }
    out->cpu_ns = kg_thread_cpu_ns() - cpu0;
    out->busy_ns = last - first;
    kg_reader_finish(&r, &b, &out->delivered, &out->missed, &out->corrupt);
    return KG_OK;
}
