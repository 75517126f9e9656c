/* kg_bench.h - the benchmark's two loops in plain C (no Python): a paced
 * writer and the bare reader that is the floor the app is measured against.
 * kgmon bench reaches them through the binding (Writer.run_paced, floor_read). */
#ifndef KG_BENCH_H
#define KG_BENCH_H

#include <stdint.h>

#include "kg_ring.h"

/* Publish `count` synthetic events at `rate` per second (0: as fast as it
 * can), catching up in batches of at most batch_max (1..65536), each event
 * with details_len bytes of details (at most 4096). Returns how many were
 * published; fewer if the file was truncated under the writer (w->broken) or
 * no memory (then 0 and *err set). */
uint64_t kg_bench_run_paced(kg_writer *w, double rate, uint64_t count, unsigned batch_max, unsigned details_len,
                            kg_status *err);

typedef struct kg_floor_result {
    uint64_t delivered, missed, corrupt;
    uint64_t cpu_ns;   /* this thread's CPU from the first event seen */
    uint64_t busy_ns;  /* from the first event seen to the last one accounted for */
    uint64_t max_stall_ns; /* the longest time between two reads outside a wait (as Reader.max_stall_ns) */
} kg_floor_result;

/* The bare reader: opens `path` at the newest event and reads until `count`
 * events are accounted for (delivered, missed or corrupt), the ring closes or
 * timeout_ns passes. spin: spin without limit between events; else sleep on
 * the futex at once. Latencies publish -> observed go into `hist`, and
 * publish -> read (copied and checked, in hand: the floor of the app's
 * "delivery", which adds only its Python objects) into `delivery`. */
kg_status kg_bench_floor_read(const char *path, uint64_t count, int spin, uint64_t timeout_ns, kg_hist *hist,
                              kg_hist *delivery, kg_floor_result *out, char *err, size_t errlen);

#endif
