/* kgpy.h - what the files of the CPython binding (module kindlyguard_monitor._ring)
 * share. The binding is thin: each py_*.c wraps one part of the C library.
 *
 *   kgmon_ring_module.c  the module: its functions, constants (STATUS_*) and init
 *   py_histogram.c       Histogram: a kg_hist
 *   py_writer.c          Writer: kg_writer, and run_paced (kg_bench.c)
 *   py_poller.c          Event, and what Reader and V1Reader share: the poll
 *                        (read, wait with the GIL released, read), stop, the
 *                        batch as a list of Event
 *   py_reader.c          Reader: kg_reader + kg_wait (format v2)
 *   py_v1_reader.c       V1Reader: kg_v1_reader (the Shield's format v1)
 * Only these files include Python.h; native/kg_* never do.
 */
#ifndef KGPY_H
#define KGPY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "kg_ring.h"

/* _ring.Error(status, detail): kindlyguard_monitor.ring maps it to RingError. */
extern PyObject *kgpy_Error;
PyObject *kgpy_raise(kg_status st, const char *detail); /* always NULL */
#define KGPY_SHRANK "the file shrank under the reader"

/* ---- Histogram ---- */
typedef struct {
    PyObject_HEAD
    kg_hist h;
} HistObject;
extern PyTypeObject kgpy_HistType;
HistObject *kgpy_hist_new(void);

/* ---- Writer ---- */
extern PyTypeObject kgpy_WriterType;

/* ---- Event, and the poll both reader types share ---- */
extern PyTypeObject *kgpy_EventType;
int kgpy_event_type_ready(void);

#define KGPY_SOURCE_CACHE 64 /* sources repeat: keep their str objects */
typedef struct {
    struct {
        uint16_t len;
        char bytes[KG_SOURCE_MAX];
        PyObject *str;
    } slot[KGPY_SOURCE_CACHE];
} kgpy_source_cache;

typedef struct kgpy_poller kgpy_poller;
struct kgpy_poller {
    /* The reader type fills these in: read a batch (never blocks); wait for
     * data (KG_OK, KG_TIMEOUT, KG_CLOSED or KG_TRUNCATED); optionally wake a
     * waiting poll at once (stop()). All three run without the GIL. */
    kg_status (*read)(void *owner, kg_batch *b);
    kg_status (*wait)(void *owner, uint64_t timeout_ns);
    void (*wake)(void *owner);
    void *owner;
    uint64_t opened_mono_ns; /* events published before this are replayed history, no latency sample */
    kg_wait wait_state;
    int open;
    int in_poll;
    volatile int stop;
    kg_event *events;
    uint8_t *text;
    size_t capacity, text_capacity;
    HistObject *transport; /* publish -> observed in C */
    HistObject *delivery;  /* publish -> Python objects built, in the polling thread */
    kgpy_source_cache sources;
    /* stalls: the longest time between leaving C at the end of one poll and
     * entering it in the next (the GIL, building the Event list, the caller's
     * own Python): how long events could pile up unread */
    uint64_t left_c_ns, max_stall_ns;
};

/* Before opening: refuse while a poll runs (RuntimeError), make the histograms. -1 on error. */
int kgpy_poller_reopen(kgpy_poller *p);
/* After a successful open: buffers for `batch` events of text_per_event bytes. -1 (MemoryError). */
int kgpy_poller_opened(kgpy_poller *p, size_t batch, size_t text_per_event, uint64_t opened_mono_ns);
/* Forget the ring (the caller closes its reader first); buffers stay for a reopen. */
void kgpy_poller_closed(kgpy_poller *p);
void kgpy_poller_dealloc(kgpy_poller *p);
/* Raise and return -1 unless the reader is open and (what != NULL) no poll runs. */
int kgpy_poller_check(kgpy_poller *p, const char *what);
int kgpy_parse_start(const char *start); /* KG_START_*, or -1 with ValueError */
int kgpy_parse_batch(Py_ssize_t batch);  /* 0, or -1 with ValueError */

PyObject *kgpy_poller_poll(kgpy_poller *p, PyObject *args, PyObject *kw);
PyObject *kgpy_poller_stop(kgpy_poller *p);
PyObject *kgpy_poller_resume(kgpy_poller *p);
PyObject *kgpy_poller_hist(kgpy_poller *p, int delivery);
PyObject *kgpy_poller_wait_stats(kgpy_poller *p);
PyObject *kgpy_poller_max_stall(kgpy_poller *p, int reset);
PyObject *kgpy_threat_events(PyObject *m, PyObject *args); /* event.from_ring()'s loop */

#define KGPY_POLL_DOC "poll(timeout=0.1, max_events=0) -> list of Event; waits with the GIL released"

/* ---- the two reader types ---- */
extern PyTypeObject kgpy_ReaderType;
extern PyTypeObject kgpy_V1ReaderType;

#endif
