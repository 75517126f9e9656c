/* kg_hist.h - a fixed-size log-linear latency histogram (HdrHistogram-style).
 *
 * Values are nanoseconds. Below 2^KG_HIST_SUB_BITS every value has its own
 * bucket; above, each power of two is cut into 2^KG_HIST_SUB_BITS linear
 * sub-buckets, so a bucket is never wider than 1/32 (3.1%) of its values.
 * Values up to 2^KG_HIST_MAX_BITS ns (about 18 minutes) are kept exactly in
 * range; larger ones land in the last bucket. Recording is a few integer
 * instructions and never allocates.
 */
#ifndef KG_HIST_H
#define KG_HIST_H

#include <stdint.h>

#define KG_HIST_SUB_BITS 5
#define KG_HIST_SUB_COUNT (1u << KG_HIST_SUB_BITS)
#define KG_HIST_MAX_BITS 40
#define KG_HIST_BUCKETS (KG_HIST_SUB_COUNT * (KG_HIST_MAX_BITS - KG_HIST_SUB_BITS + 1))

typedef struct kg_hist {
    uint64_t counts[KG_HIST_BUCKETS];
    uint64_t total;
    uint64_t min, max;
    double sum;
} kg_hist;

void kg_hist_reset(kg_hist *h);
void kg_hist_record(kg_hist *h, uint64_t value_ns);
void kg_hist_merge(kg_hist *into, const kg_hist *from);
unsigned kg_hist_index(uint64_t value_ns);
uint64_t kg_hist_bucket_low(unsigned index);
uint64_t kg_hist_bucket_high(unsigned index); /* inclusive */
/* The value below which `percentile` (0..100) of recordings fall: the highest
 * value of that bucket, clamped to the recorded max (0 when empty). */
uint64_t kg_hist_percentile(const kg_hist *h, double percentile);

#endif
