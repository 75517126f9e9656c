/* kg_hist.c - log-linear latency histogram; see kg_hist.h for the bucket layout. */
#include <string.h>

#include "kg_hist.h"

void kg_hist_reset(kg_hist *h) {
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

#if defined(_MSC_VER)
#include <intrin.h>
static unsigned msb64(uint64_t v) {
    unsigned long i;
    _BitScanReverse64(&i, v);
    return (unsigned)i;
}
#else
static unsigned msb64(uint64_t v) { return 63u - (unsigned)__builtin_clzll(v); } /* v != 0 */
#endif

unsigned kg_hist_index(uint64_t v) {
    if (v < KG_HIST_SUB_COUNT) return (unsigned)v;
    unsigned top = msb64(v);
    if (top >= KG_HIST_MAX_BITS) return KG_HIST_BUCKETS - 1;
    unsigned shift = top - KG_HIST_SUB_BITS;                  /* width of a sub-bucket is 2^shift */
    unsigned sub = (unsigned)(v >> shift) - KG_HIST_SUB_COUNT; /* 0..31 within this power of two */
    return KG_HIST_SUB_COUNT * (shift + 1) + sub;
}

uint64_t kg_hist_bucket_low(unsigned i) {
    if (i < KG_HIST_SUB_COUNT) return i;
    unsigned shift = i / KG_HIST_SUB_COUNT - 1;
    uint64_t sub = i % KG_HIST_SUB_COUNT + KG_HIST_SUB_COUNT;
    return sub << shift;
}

uint64_t kg_hist_bucket_high(unsigned i) {
    if (i < KG_HIST_SUB_COUNT) return i;
    unsigned shift = i / KG_HIST_SUB_COUNT - 1;
    return kg_hist_bucket_low(i) + ((uint64_t)1 << shift) - 1;
}

void kg_hist_record(kg_hist *h, uint64_t v) {
    h->counts[kg_hist_index(v)]++;
    h->total++;
    if (v < h->min) h->min = v;
    if (v > h->max) h->max = v;
    h->sum += (double)v;
}

void kg_hist_merge(kg_hist *into, const kg_hist *from) {
    for (unsigned i = 0; i < KG_HIST_BUCKETS; i++) into->counts[i] += from->counts[i];
    into->total += from->total;
    into->sum += from->sum;
    if (from->min < into->min) into->min = from->min;
    if (from->max > into->max) into->max = from->max;
}

uint64_t kg_hist_percentile(const kg_hist *h, double pct) {
    if (!h->total) return 0;
    if (pct < 0) pct = 0;
    if (pct > 100) pct = 100;
    /* rank of the recording we want, 1-based: ceil(pct/100 * total), at least 1 */
    double want = pct / 100.0 * (double)h->total;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want) rank++;
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < KG_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            if (i == KG_HIST_BUCKETS - 1) return h->max; /* the overflow bucket has no upper bound */
            uint64_t v = kg_hist_bucket_high(i);
            if (v > h->max) v = h->max;
            if (v < h->min) v = h->min;
            return v;
        }
    }
    return h->max;
}
