/* kg_reader_batch.h - the heap batch a plain-C reader reads into, and the reader's
 * teardown: the library's own readers (kg_bench.c's floor, selftest.c's reader
 * threads) set up and end the same way. */
#ifndef KG_READER_BATCH_H
#define KG_READER_BATCH_H

#include <stdlib.h>

#include "kg_ring.h"

/* A batch of `capacity` events with `text_per_event` bytes of text each, on the
 * heap. 0 when out of memory (then nothing is held). */
static inline int kg_batch_alloc(kg_batch *b, size_t capacity, size_t text_per_event) {
    *b = (kg_batch){.events = calloc(capacity, sizeof *b->events), .capacity = capacity,
                    .text = malloc(capacity * text_per_event), .text_capacity = capacity * text_per_event};
    if (b->events && b->text) return 1;
    free(b->events);
    free(b->text);
    *b = (kg_batch){0};
    return 0;
}

/* The reader's counts (delivered, missed, corrupt) into the caller's, then the
 * reader closed and the batch's buffers freed. */
static inline void kg_reader_finish(kg_reader *r, kg_batch *b, uint64_t *delivered, uint64_t *missed,
                                    uint64_t *corrupt) {
    *delivered = r->delivered;
    *missed = r->missed;
    *corrupt = r->corrupt;
    kg_reader_close(r);
    free(b->events);
    free(b->text);
    *b = (kg_batch){0};
}

#endif
