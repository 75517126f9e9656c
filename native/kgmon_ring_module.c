/* kgmon_ring_module.c - the thin CPython binding over the ring library
 * (module kindlyguard_monitor._ring). The C library owns the speed; the kindlyguard_monitor.ring modules owns the
 * API users see (names, exceptions with sentences).
 *
 *   Histogram          a kg_hist: record, percentile, buckets
 *   Writer             kg_writer: publish a batch of tuples, tick, close;
 *                      run_paced() is the bench's C writer (no Python per event)
 *   Reader             kg_reader + kg_wait: poll() waits and reads with the
 *                      GIL released, stamps the observe time in C, then builds
 *                      one list of Event objects for the batch
 *   Event              a struct sequence (a tuple with names): cheap to build
 *   floor_read()       the bench's bare C reader: no Python per event
 *   Error              raised with (status, detail); kindlyguard_monitor.ring maps it to RingError
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>

#include "kg_atomic.h"
#include "kg_ring.h"
#include "kg_v1.h"

static PyObject *RingErr; /* _ring.Error(status, detail) */

static PyObject *raise_status(kg_status st, const char *detail) {
    PyObject *args = Py_BuildValue("(is)", (int)st, detail ? detail : "");
    if (args) {
        PyErr_SetObject(RingErr, args);
        Py_DECREF(args);
    }
    return NULL;
}

/* ------------------------------------------------------------------ Histogram */

typedef struct {
    PyObject_HEAD
    kg_hist h;
} HistObject;

static PyTypeObject HistType;

static PyObject *hist_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    HistObject *self = (HistObject *)type->tp_alloc(type, 0);
    if (self) kg_hist_reset(&self->h);
    return (PyObject *)self;
}

static PyObject *hist_record(HistObject *self, PyObject *arg) {
    unsigned long long v = PyLong_AsUnsignedLongLong(arg);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    kg_hist_record(&self->h, v);
    Py_RETURN_NONE;
}

static PyObject *hist_percentile(HistObject *self, PyObject *arg) {
    double p = PyFloat_AsDouble(arg);
    if (p == -1.0 && PyErr_Occurred()) return NULL;
    return PyLong_FromUnsignedLongLong(kg_hist_percentile(&self->h, p));
}

static PyObject *hist_reset(HistObject *self, PyObject *unused) {
    kg_hist_reset(&self->h);
    Py_RETURN_NONE;
}

static PyObject *hist_merge(HistObject *self, PyObject *other) {
    if (!PyObject_TypeCheck(other, &HistType)) return PyErr_Format(PyExc_TypeError, "merge() takes a Histogram");
    kg_hist_merge(&self->h, &((HistObject *)other)->h);
    Py_RETURN_NONE;
}

static PyObject *hist_copy(HistObject *self, PyObject *unused) {
    HistObject *c = (HistObject *)hist_new(&HistType, NULL, NULL);
    if (c) c->h = self->h;
    return (PyObject *)c;
}

/* [(low_ns, high_ns, count), ...] for every non-empty bucket. */
static PyObject *hist_buckets(HistObject *self, PyObject *unused) {
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    for (unsigned i = 0; i < KG_HIST_BUCKETS; i++) {
        if (!self->h.counts[i]) continue;
        PyObject *t = Py_BuildValue("(KKK)", (unsigned long long)kg_hist_bucket_low(i),
                                    (unsigned long long)kg_hist_bucket_high(i), (unsigned long long)self->h.counts[i]);
        if (!t || PyList_Append(out, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(t);
    }
    return out;
}

static PyObject *hist_get_count(HistObject *self, void *c) { return PyLong_FromUnsignedLongLong(self->h.total); }
static PyObject *hist_get_min(HistObject *self, void *c) {
    return PyLong_FromUnsignedLongLong(self->h.total ? self->h.min : 0);
}
static PyObject *hist_get_max(HistObject *self, void *c) { return PyLong_FromUnsignedLongLong(self->h.max); }
static PyObject *hist_get_mean(HistObject *self, void *c) {
    return PyFloat_FromDouble(self->h.total ? self->h.sum / (double)self->h.total : 0.0);
}

static PyObject *hist_bucket_index(PyObject *cls, PyObject *arg) {
    unsigned long long v = PyLong_AsUnsignedLongLong(arg);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    unsigned i = kg_hist_index(v);
    return Py_BuildValue("(IKK)", i, (unsigned long long)kg_hist_bucket_low(i),
                         (unsigned long long)kg_hist_bucket_high(i));
}

static PyMethodDef hist_methods[] = {
    {"record", (PyCFunction)hist_record, METH_O, "record(ns): add one value"},
    {"percentile", (PyCFunction)hist_percentile, METH_O, "percentile(p): value (ns) at p in 0..100"},
    {"reset", (PyCFunction)hist_reset, METH_NOARGS, "forget every value"},
    {"merge", (PyCFunction)hist_merge, METH_O, "merge(other): add other's values"},
    {"copy", (PyCFunction)hist_copy, METH_NOARGS, "a snapshot"},
    {"buckets", (PyCFunction)hist_buckets, METH_NOARGS, "[(low_ns, high_ns, count)] of non-empty buckets"},
    {"bucket_of", (PyCFunction)hist_bucket_index, METH_O | METH_CLASS, "bucket_of(ns) -> (index, low, high)"},
    {NULL}};

static PyGetSetDef hist_getset[] = {{"count", (getter)hist_get_count, NULL, "values recorded", NULL},
                                    {"min", (getter)hist_get_min, NULL, "smallest value (ns)", NULL},
                                    {"max", (getter)hist_get_max, NULL, "largest value (ns)", NULL},
                                    {"mean", (getter)hist_get_mean, NULL, "mean (ns)", NULL},
                                    {NULL}};

static PyTypeObject HistType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "kindlyguard_monitor._ring.Histogram",
    .tp_basicsize = sizeof(HistObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Log-linear latency histogram in nanoseconds (kg_hist.h).",
    .tp_new = hist_new,
    .tp_methods = hist_methods,
    .tp_getset = hist_getset,
};

/* ------------------------------------------------------------------ Event */

static PyTypeObject *EventType;

static PyStructSequence_Field event_fields[] = {
    {"seq", "event number n; the event's identity is (generation, seq)"},
    {"publish_mono_ns", "writer's CLOCK_MONOTONIC at publish"},
    {"observe_mono_ns", "reader's CLOCK_MONOTONIC when it saw the event, before taking the GIL"},
    {"timestamp_unix_us", "wall clock of the threat"},
    {"threat_type", "0..7 (unknown values read as 0)"},
    {"severity", "1 Low .. 4 Critical"},
    {"blocked", "bool"},
    {"flags", "bit 0 source truncated, bit 1 details truncated"},
    {"source", "str (untrusted)"},
    {"details", "str (untrusted)"},
    {NULL}};

static PyStructSequence_Desc event_desc = {"kindlyguard_monitor._ring.Event", "One threat read from the ring.", event_fields, 10};

/* ------------------------------------------------------------------ Writer */

typedef struct {
    PyObject_HEAD
    kg_writer w;
    int open;
    int in_run; /* run_paced() is publishing with the GIL released */
} WriterObject;

static int writer_init(WriterObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", "slot_size", "slot_count", NULL};
    PyObject *path_obj;
    Py_ssize_t slot_size = KG_SLOT_SIZE_DEFAULT, slot_count = KG_SLOT_COUNT_DEFAULT;
    if (self->open) {
        PyErr_SetString(PyExc_RuntimeError, "this Writer is already open");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|nn", kwlist, PyUnicode_FSConverter, &path_obj, &slot_size,
                                     &slot_count))
        return -1;
    /* out of u32 range: hand the library a value it refuses with its own message */
    uint32_t size32 = (slot_size < 0 || slot_size > UINT32_MAX) ? 0 : (uint32_t)slot_size;
    uint32_t count32 = (slot_count < 0 || slot_count > UINT32_MAX) ? 0 : (uint32_t)slot_count;
    char err[KG_ERRLEN] = "";
    kg_status st;
    Py_BEGIN_ALLOW_THREADS st = kg_writer_create(&self->w, PyBytes_AS_STRING(path_obj), size32, count32, err,
                                                 sizeof err);
    Py_END_ALLOW_THREADS Py_DECREF(path_obj);
    if (st != KG_OK) {
        raise_status(st, err);
        return -1;
    }
    self->open = 1;
    return 0;
}

static void writer_dealloc(WriterObject *self) {
    if (self->open) kg_writer_close(&self->w);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define WRITER_OPEN(self)                                                           \
    if (!(self)->open) {                                                            \
        PyErr_SetString(PyExc_ValueError, "the writer is closed");                  \
        return NULL;                                                                \
    }
#define WRITER_IDLE(self)                                                           \
    if ((self)->in_run) {                                                           \
        PyErr_SetString(PyExc_RuntimeError, "run_paced() is running in another thread"); \
        return NULL;                                                                \
    }

/* UTF-8 of a str, or a bytes object as given (the writer cuts either at a
 * character boundary; readers decode invalid UTF-8 with replacement). */
static const char *text_of(PyObject *o, Py_ssize_t *len) {
    if (PyBytes_Check(o)) {
        *len = PyBytes_GET_SIZE(o);
        return PyBytes_AS_STRING(o);
    }
    return PyUnicode_AsUTF8AndSize(o, len);
}

/* One event tuple -> kg_event_in. Integers out of their field's range raise
 * OverflowError (a timestamp or type no reader could read back); a severity
 * out of 1..4 is passed on so the library refuses it and counts it dropped. */
static int parse_event(PyObject *t, kg_event_in *e) {
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "an event is a tuple (timestamp_unix_us, threat_type, severity, blocked, source, details)");
        return -1;
    }
    PyObject *ts = PyTuple_GET_ITEM(t, 0), *type = PyTuple_GET_ITEM(t, 1), *sev = PyTuple_GET_ITEM(t, 2);
    PyObject *src = PyTuple_GET_ITEM(t, 4), *det = PyTuple_GET_ITEM(t, 5);
    if (!PyLong_Check(ts) || !PyLong_Check(type) || !PyLong_Check(sev) ||
        !(PyUnicode_Check(src) || PyBytes_Check(src)) || !(PyUnicode_Check(det) || PyBytes_Check(det))) {
        PyErr_SetString(PyExc_TypeError,
                        "timestamp, threat_type and severity are int; source and details are str or bytes");
        return -1;
    }
    unsigned long long ts_v = PyLong_AsUnsignedLongLong(ts);
    if (ts_v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    unsigned long long type_v = PyLong_AsUnsignedLongLong(type);
    if (type_v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    if (type_v > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "threat_type does not fit in 32 bits");
        return -1;
    }
    int overflow = 0;
    long sev_v = PyLong_AsLongAndOverflow(sev, &overflow);
    if (sev_v == -1 && PyErr_Occurred()) return -1;
    int blocked = PyObject_IsTrue(PyTuple_GET_ITEM(t, 3));
    if (blocked < 0) return -1;
    Py_ssize_t src_len = 0, det_len = 0;
    const char *src_p = text_of(src, &src_len);
    const char *det_p = src_p ? text_of(det, &det_len) : NULL;
    if (!src_p || !det_p) return -1;
    *e = (kg_event_in){.timestamp_unix_us = ts_v,
                       .threat_type = (uint32_t)type_v,
                       .severity = (uint8_t)((overflow || sev_v < 0 || sev_v > 255) ? 0 : sev_v),
                       .blocked = (uint8_t)blocked,
                       .source = src_p,
                       .source_len = (size_t)src_len,
                       .details = det_p,
                       .details_len = (size_t)det_len};
    return 0;
}

/* publish([(timestamp_unix_us, threat_type, severity, blocked, source, details), ...]) -> published */
static PyObject *writer_publish(WriterObject *self, PyObject *seq) {
    WRITER_OPEN(self);
    WRITER_IDLE(self);
    PyObject *fast = PySequence_Fast(seq, "publish() takes a sequence of event tuples");
    if (!fast) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    kg_event_in *evs = PyMem_Calloc(n ? (size_t)n : 1, sizeof *evs);
    if (!evs) {
        Py_DECREF(fast);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (parse_event(PySequence_Fast_GET_ITEM(fast, i), &evs[i]) < 0) {
            PyMem_Free(evs);
            Py_DECREF(fast);
            return NULL;
        }
    }
    /* the UTF-8 buffers stay alive: `fast` holds the tuples, which hold the strings */
    size_t done = kg_writer_publish(&self->w, evs, (size_t)n);
    PyMem_Free(evs);
    Py_DECREF(fast);
    if (self->w.broken) return raise_status(self->w.broken, "the file shrank under the writer");
    return PyLong_FromSize_t(done);
}

static PyObject *writer_tick(WriterObject *self, PyObject *unused) {
    WRITER_OPEN(self);
    WRITER_IDLE(self);
    if (kg_writer_tick(&self->w) != KG_OK) return raise_status(self->w.broken, "the file shrank under the writer");
    Py_RETURN_NONE;
}

static PyObject *writer_close(WriterObject *self, PyObject *unused) {
    WRITER_IDLE(self);
    if (self->open) {
        kg_writer_close(&self->w);
        self->open = 0;
    }
    Py_RETURN_NONE;
}

/* run_paced(rate, count, batch_max=256, source=..., details=...) -> published
 * The bench's C writer: publishes `count` synthetic events at `rate` per
 * second (0 = as fast as it can), catching up in batches of at most
 * batch_max, with the GIL released the whole time. */
static PyObject *writer_run_paced(WriterObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"rate", "count", "batch_max", "details_len", NULL};
    double rate;
    unsigned long long count;
    unsigned int batch_max = 256, details_len = 64;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "dK|II", kwlist, &rate, &count, &batch_max, &details_len))
        return NULL;
    WRITER_OPEN(self);
    WRITER_IDLE(self);
    if (batch_max < 1 || batch_max > 65536) return PyErr_Format(PyExc_ValueError, "batch_max 1..65536");
    char details[4096];
    if (details_len > sizeof details) details_len = sizeof details;
    for (unsigned i = 0; i < details_len; i++) details[i] = (char)('a' + i % 26);
    kg_event_in *evs = PyMem_Calloc(batch_max, sizeof *evs);
    if (!evs) return PyErr_NoMemory();
    for (unsigned i = 0; i < batch_max; i++)
        evs[i] = (kg_event_in){.threat_type = 4, .severity = 3, .blocked = 1, .source = "bench:c-writer",
                               .source_len = 14, .details = details, .details_len = details_len};
    unsigned long long done = 0;
    self->in_run = 1;
    Py_BEGIN_ALLOW_THREADS;
    const uint64_t start = kg_mono_ns();
    while (done < count && !self->w.broken) {
        uint64_t now = kg_mono_ns();
        uint64_t due = rate > 0 ? (uint64_t)((double)(now - start) * rate / 1e9) + 1 : count;
        if (due > count) due = count;
        if (due <= done) {
            kg_writer_tick(&self->w);
            /* Low rates: sleep most of the gap and spin the last 60 us, so each
             * event goes out alone and on time. High rates: nap 20 us and let
             * the due events gather into one batch, as a real writer under load
             * does, instead of burning the core the reader may need. */
            uint64_t next_ns = start + (uint64_t)((double)(done) * 1e9 / rate);
            if (next_ns > now + 80000) kg_sleep_ns(next_ns - now - 60000);
            else if (rate >= 100000.0) kg_sleep_ns(20000);
            else kg_cpu_relax();
            continue;
        }
        uint64_t n = due - done;
        if (n > batch_max) n = batch_max;
        uint64_t ts = kg_unix_ns() / 1000;
        for (uint64_t i = 0; i < n; i++) evs[i].timestamp_unix_us = ts;
        done += kg_writer_publish(&self->w, evs, (size_t)n);
    }
    Py_END_ALLOW_THREADS;
    self->in_run = 0;
    PyMem_Free(evs);
    if (self->w.broken) return raise_status(self->w.broken, "the file shrank under the writer");
    return PyLong_FromUnsignedLongLong(done);
}

static PyObject *writer_get_generation(WriterObject *self, void *c) {
    WRITER_OPEN(self);
    return PyLong_FromUnsignedLongLong(self->w.generation);
}
static PyObject *writer_get_write_seq(WriterObject *self, void *c) { return PyLong_FromUnsignedLongLong(self->w.next); }
static PyObject *writer_get_counter(WriterObject *self, void *which) {
    WRITER_OPEN(self);
    uint64_t dropped, truncated;
    if (kg_writer_counters(&self->w, &dropped, &truncated) != KG_OK)
        return raise_status(self->w.broken, "the file shrank under the writer");
    return PyLong_FromUnsignedLongLong(which ? truncated : dropped);
}
static PyObject *writer_get_slot_size(WriterObject *self, void *c) { return PyLong_FromUnsignedLong(self->w.slot_size); }
static PyObject *writer_get_slot_count(WriterObject *self, void *c) {
    return PyLong_FromUnsignedLong(self->w.slot_mask + 1);
}
static PyObject *writer_get_closed(WriterObject *self, void *c) { return PyBool_FromLong(!self->open); }

static PyMethodDef writer_methods[] = {
    {"publish", (PyCFunction)writer_publish, METH_O,
     "publish(events) -> published; each event (timestamp_unix_us, threat_type, severity, blocked, source, details)"},
    {"tick", (PyCFunction)writer_tick, METH_NOARGS, "refresh the heartbeat if due"},
    {"close", (PyCFunction)writer_close, METH_NOARGS, "mark the ring closed, wake readers, release the lock"},
    {"run_paced", (PyCFunction)(void (*)(void))writer_run_paced, METH_VARARGS | METH_KEYWORDS,
     "run_paced(rate, count, batch_max=256, details_len=64): bench writer, GIL released"},
    {NULL}};

static PyGetSetDef writer_getset[] = {{"generation", (getter)writer_get_generation, NULL, NULL, NULL},
                                      {"write_seq", (getter)writer_get_write_seq, NULL, NULL, NULL},
                                      {"dropped", (getter)writer_get_counter, NULL, NULL, NULL},
                                      {"truncated", (getter)writer_get_counter, NULL, NULL, (void *)1},
                                      {"slot_size", (getter)writer_get_slot_size, NULL, NULL, NULL},
                                      {"slot_count", (getter)writer_get_slot_count, NULL, NULL, NULL},
                                      {"closed", (getter)writer_get_closed, NULL, NULL, NULL},
                                      {NULL}};

static PyTypeObject WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "kindlyguard_monitor._ring.Writer",
    .tp_basicsize = sizeof(WriterObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Writer(path, slot_size=512, slot_count=4096): create a ring and publish into it.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)writer_init,
    .tp_dealloc = (destructor)writer_dealloc,
    .tp_methods = writer_methods,
    .tp_getset = writer_getset,
};

/* ------------------------------------------------------------------ Reader */

#define SOURCE_CACHE 64 /* sources repeat: keep their str objects */

typedef struct {
    struct {
        uint16_t len;
        char bytes[KG_SOURCE_MAX];
        PyObject *str;
    } slot[SOURCE_CACHE];
} SourceCache;

typedef struct {
    PyObject_HEAD
    kg_reader r;
    kg_wait wait;
    int open;
    int in_poll;
    volatile int stop;
    kg_event *events;
    uint8_t *text;
    size_t capacity, text_capacity;
    HistObject *transport;  /* publish -> observed in C */
    HistObject *delivery;   /* publish -> Python objects built, in the polling thread */
    SourceCache sources;
} ReaderObject;

static PyObject *source_str(SourceCache *cache, const char *p, uint16_t len) {
    uint32_t hsh = 2166136261u;
    for (uint16_t i = 0; i < len; i++) hsh = (hsh ^ (uint8_t)p[i]) * 16777619u;
    unsigned slot = hsh % SOURCE_CACHE;
    if (len > KG_SOURCE_MAX) return PyUnicode_DecodeUTF8(p, len, "replace");
    if (cache->slot[slot].str && cache->slot[slot].len == len && memcmp(cache->slot[slot].bytes, p, len) == 0) {
        Py_INCREF(cache->slot[slot].str);
        return cache->slot[slot].str;
    }
    PyObject *s = PyUnicode_DecodeUTF8(p, len, "replace");
    if (!s) return NULL;
    Py_XSETREF(cache->slot[slot].str, Py_NewRef(s));
    cache->slot[slot].len = len;
    memcpy(cache->slot[slot].bytes, p, len);
    return s;
}

static void source_cache_clear(SourceCache *cache) {
    for (int i = 0; i < SOURCE_CACHE; i++) Py_CLEAR(cache->slot[i].str);
}

static void reader_release(ReaderObject *self) {
    if (self->open) kg_reader_close(&self->r);
    self->open = 0;
    source_cache_clear(&self->sources);
}

/* One list of Event objects for a batch read in C (v2 or v1), and its
 * publish -> Python-objects delivery latency (history replayed at open is none). */
static PyObject *events_list(const kg_batch *b, SourceCache *cache, HistObject *delivery, uint64_t opened_mono_ns) {
    PyObject *list = PyList_New((Py_ssize_t)b->count);
    if (!list) return NULL;
    /* Events of one batch share their publish stamp (one writer batch), their
     * observe stamp (one read) and often their timestamp: build each int once. */
    PyObject *shared[3] = {NULL, NULL, NULL};
    uint64_t shared_v[3] = {0, 0, 0};
    for (size_t i = 0; i < b->count; i++) {
        const kg_event *e = &b->events[i];
        const char *txt = (const char *)b->text + e->text_offset;
        PyObject *ev = PyStructSequence_New(EventType);
        if (!ev) goto fail;
        PyList_SET_ITEM(list, (Py_ssize_t)i, ev);
        PyObject *src = source_str(cache, txt, e->source_len);
        PyObject *det = PyUnicode_DecodeUTF8(txt + e->source_len, e->details_len, "replace");
        const uint64_t stamps[3] = {e->publish_mono_ns, e->observe_mono_ns, e->timestamp_unix_us};
        for (int k = 0; k < 3; k++) {
            if (!shared[k] || shared_v[k] != stamps[k]) {
                Py_XSETREF(shared[k], PyLong_FromUnsignedLongLong(stamps[k]));
                shared_v[k] = stamps[k];
            }
        }
        PyObject *items[10] = {PyLong_FromUnsignedLongLong(e->seq),
                               Py_XNewRef(shared[0]),
                               Py_XNewRef(shared[1]),
                               Py_XNewRef(shared[2]),
                               PyLong_FromUnsignedLong(e->threat_type),
                               PyLong_FromUnsignedLong(e->severity),
                               PyBool_FromLong(e->blocked),
                               PyLong_FromUnsignedLong(e->flags),
                               src,
                               det};
        for (int k = 0; k < 10; k++) {
            if (!items[k]) {
                for (int j = 0; j < 10; j++) Py_XDECREF(items[j]);
                goto fail;
            }
        }
        for (int k = 0; k < 10; k++) PyStructSequence_SET_ITEM(ev, k, items[k]);
        /* An Event holds only ints, strs and a bool: it can never be part of a
         * reference cycle. Untracked, the cyclic GC never walks it, so millions
         * of events a second do not turn into millisecond collections. */
        PyObject_GC_UnTrack(ev);
    }
    for (int k = 0; k < 3; k++) Py_XDECREF(shared[k]);
    if (b->count) {
        /* delivery: the batch is Python objects in this thread now */
        uint64_t now = kg_mono_ns();
        for (size_t i = 0; i < b->count; i++) {
            uint64_t pub = b->events[i].publish_mono_ns;
            if (pub >= opened_mono_ns) /* replayed history is no latency sample */
                kg_hist_record(&delivery->h, now > pub ? now - pub : 0);
        }
    }
    return list;
fail:
    for (int k = 0; k < 3; k++) Py_XDECREF(shared[k]);
    Py_DECREF(list);
    return NULL;
}

static int reader_init(ReaderObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", "start", "spin_ns", "adaptive", "batch", NULL};
    PyObject *path_obj;
    const char *start = "oldest";
    unsigned long long spin_ns = 50000;
    int adaptive = 1;
    Py_ssize_t batch = 2048;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|sKpn", kwlist, PyUnicode_FSConverter, &path_obj, &start, &spin_ns,
                                     &adaptive, &batch))
        return -1;
    if (self->in_poll) {
        Py_DECREF(path_obj);
        PyErr_SetString(PyExc_RuntimeError, "poll() is running in another thread: stop() it first");
        return -1;
    }
    int start_at;
    if (strcmp(start, "oldest") == 0) start_at = KG_START_OLDEST;
    else if (strcmp(start, "newest") == 0) start_at = KG_START_NEWEST;
    else {
        Py_DECREF(path_obj);
        PyErr_SetString(PyExc_ValueError, "start is 'oldest' or 'newest'");
        return -1;
    }
    if (batch < 1 || batch > 1 << 20) {
        Py_DECREF(path_obj);
        PyErr_SetString(PyExc_ValueError, "batch is 1..1048576");
        return -1;
    }
    reader_release(self);
    if (!self->transport) self->transport = (HistObject *)hist_new(&HistType, NULL, NULL);
    if (!self->delivery) self->delivery = (HistObject *)hist_new(&HistType, NULL, NULL);
    if (!self->transport || !self->delivery) {
        Py_DECREF(path_obj);
        return -1;
    }
    self->r.transport = &self->transport->h;
    char err[KG_ERRLEN] = "";
    kg_status st;
    Py_BEGIN_ALLOW_THREADS st = kg_reader_open(&self->r, PyBytes_AS_STRING(path_obj), start_at, err, sizeof err);
    Py_END_ALLOW_THREADS Py_DECREF(path_obj);
    if (st != KG_OK) {
        raise_status(st, err);
        return -1;
    }
    self->open = 1;
    kg_wait_init(&self->wait, spin_ns, adaptive);
    self->wait.stop = &self->stop;
    self->stop = 0;
    size_t text_cap = (size_t)batch * (self->r.slot_size - KG_SLOT_TEXT_OFFSET);
    PyMem_Free(self->events);
    PyMem_Free(self->text);
    self->events = PyMem_Malloc((size_t)batch * sizeof(kg_event));
    self->text = PyMem_Malloc(text_cap);
    if (!self->events || !self->text) {
        reader_release(self);
        PyErr_NoMemory();
        return -1;
    }
    self->capacity = (size_t)batch;
    self->text_capacity = text_cap;
    return 0;
}

static void reader_dealloc(ReaderObject *self) {
    reader_release(self);
    PyMem_Free(self->events);
    PyMem_Free(self->text);
    Py_XDECREF(self->transport);
    Py_XDECREF(self->delivery);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define READER_OPEN(self)                                                       \
    if (!(self)->open) {                                                        \
        PyErr_SetString(PyExc_ValueError, "the reader is closed");              \
        return NULL;                                                            \
    }

/* poll(timeout=0.1, max_events=0) -> [Event, ...]; [] when nothing came in
 * time, the ring closed, or stop() was called. Spins, sleeps and reads with
 * the GIL released. max_events > 0 caps the batch below the reader's size. */
static PyObject *reader_poll(ReaderObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"timeout", "max_events", NULL};
    double timeout = 0.1;
    Py_ssize_t max_events = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|dn", kwlist, &timeout, &max_events)) return NULL;
    READER_OPEN(self);
    if (self->in_poll) return PyErr_Format(PyExc_RuntimeError, "poll() is already running in another thread");
    uint64_t timeout_ns = timeout <= 0 ? 0 : (uint64_t)(timeout * 1e9);
    kg_batch b = {.events = self->events, .capacity = self->capacity, .text = self->text,
                  .text_capacity = self->text_capacity};
    if (max_events > 0 && (size_t)max_events < b.capacity) b.capacity = (size_t)max_events;
    self->in_poll = 1;
    kg_status st;
    Py_BEGIN_ALLOW_THREADS;
    st = kg_reader_read(&self->r, &b);
    if (st == KG_OK && b.count == 0 && timeout_ns && !self->stop) {
        /* wait only when a read found nothing: under load we never wait */
        st = kg_wait_for_data(&self->r, &self->wait, timeout_ns);
        if (st == KG_OK) st = kg_reader_read(&self->r, &b);
    }
    Py_END_ALLOW_THREADS;
    self->in_poll = 0;
    /* A truncated ring: hand out what was read before the fault; the next
     * poll (which reads nothing more) raises. */
    if (st == KG_TRUNCATED && b.count == 0) return raise_status(st, "the file shrank under the reader");

    return events_list(&b, &self->sources, self->delivery, self->r.opened_mono_ns);
}

/* stop(): make a poll() in another thread return promptly (thread-safe,
 * needs no lock: a flag, then a futex wake of our own waiter). */
static PyObject *reader_stop(ReaderObject *self, PyObject *unused) {
    self->stop = 1;
    kg_fence_seqcst(); /* the flag is visible before the wake-up */
    if (self->open && self->r.hdr) kg_futex_wake_all(&self->r.hdr->wake_seq);
    Py_RETURN_NONE;
}

static PyObject *reader_resume(ReaderObject *self, PyObject *unused) {
    self->stop = 0;
    Py_RETURN_NONE;
}

static PyObject *reader_seek(ReaderObject *self, PyObject *arg) {
    READER_OPEN(self);
    if (self->in_poll) return PyErr_Format(PyExc_RuntimeError, "seek() while poll() runs in another thread");
    unsigned long long n = PyLong_AsUnsignedLongLong(arg);
    if (n == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    kg_reader_seek(&self->r, n);
    return PyLong_FromUnsignedLongLong(self->r.cursor);
}

static PyObject *reader_health(ReaderObject *self, PyObject *unused) {
    READER_OPEN(self);
    kg_status st;
    Py_BEGIN_ALLOW_THREADS st = kg_reader_health(&self->r, kg_mono_ns());
    Py_END_ALLOW_THREADS return PyLong_FromLong((long)st);
}

static PyObject *reader_close(ReaderObject *self, PyObject *unused) {
    if (self->in_poll) return PyErr_Format(PyExc_RuntimeError, "close() while poll() runs: call stop() first");
    reader_release(self);
    Py_RETURN_NONE;
}

static PyObject *reader_heartbeat_age_ns(ReaderObject *self, PyObject *unused) {
    READER_OPEN(self);
    uint64_t age = kg_reader_heartbeat_age(&self->r, kg_mono_ns());
    if (age == UINT64_MAX) return raise_status(KG_TRUNCATED, "the file shrank under the reader");
    return PyLong_FromUnsignedLongLong(age);
}

static PyObject *reader_get_u64(ReaderObject *self, void *offset) {
    READER_OPEN(self);
    return PyLong_FromUnsignedLongLong(*(uint64_t *)((char *)&self->r + (size_t)offset));
}
static PyObject *reader_get_u32(ReaderObject *self, void *offset) {
    READER_OPEN(self);
    return PyLong_FromUnsignedLong(*(uint32_t *)((char *)&self->r + (size_t)offset));
}
static PyObject *reader_get_write_seq(ReaderObject *self, void *c) {
    READER_OPEN(self);
    return PyLong_FromUnsignedLongLong(kg_reader_write_seq(&self->r));
}
static PyObject *reader_get_writer_counter(ReaderObject *self, void *which) {
    READER_OPEN(self);
    kg_vitals v;
    if (kg_reader_vitals(&self->r, &v) != KG_OK) return raise_status(KG_TRUNCATED, "the file shrank under the reader");
    return PyLong_FromUnsignedLongLong(which ? v.writer_truncated : v.writer_dropped);
}
static PyObject *reader_get_spin_ns(ReaderObject *self, void *c) { return PyLong_FromUnsignedLongLong(self->wait.spin_ns); }
static PyObject *reader_get_wait_stats(ReaderObject *self, void *c) {
    return Py_BuildValue("(KK)", (unsigned long long)self->wait.spins_won, (unsigned long long)self->wait.sleeps);
}
static PyObject *reader_get_hist(ReaderObject *self, void *which) {
    HistObject *h = which ? self->delivery : self->transport;
    if (!h) {
        PyErr_SetString(PyExc_ValueError, "the reader was never opened");
        return NULL;
    }
    return Py_NewRef((PyObject *)h);
}
static PyObject *reader_get_closed(ReaderObject *self, void *c) { return PyBool_FromLong(!self->open); }

#define U64(name, doc) {#name, (getter)reader_get_u64, NULL, doc, (void *)offsetof(kg_reader, name)}
#define U32(name, doc) {#name, (getter)reader_get_u32, NULL, doc, (void *)offsetof(kg_reader, name)}
static PyGetSetDef reader_getset[] = {
    U64(delivered, "events delivered so far"),
    U64(missed, "events lost: overwritten before this reader read them"),
    U64(corrupt, "events that failed the length, severity or CRC check"),
    U64(cursor, "next event number this reader will read"),
    U64(resets, "times write_seq went backwards (each read as a new epoch)"),
    U64(generation, "the writer's generation"),
    U32(writer_pid, "the writer's process id"),
    U32(slot_size, "bytes per slot"),
    U32(slot_count, "slots in the ring"),
    {"write_seq", (getter)reader_get_write_seq, NULL, "events the writer has published", NULL},
    {"writer_dropped", (getter)reader_get_writer_counter, NULL, "events the writer refused", NULL},
    {"writer_truncated", (getter)reader_get_writer_counter, NULL, "events whose text was cut", (void *)1},
    {"spin_ns", (getter)reader_get_spin_ns, NULL, "current spin budget", NULL},
    {"wait_stats", (getter)reader_get_wait_stats, NULL, "(spins that found data, sleeps)", NULL},
    {"transport_latency", (getter)reader_get_hist, NULL, "Histogram: publish -> seen by the C reader", NULL},
    {"delivery_latency", (getter)reader_get_hist, NULL, "Histogram: publish -> Python objects built", (void *)1},
    {"closed", (getter)reader_get_closed, NULL, NULL, NULL},
    {NULL}};

static PyMethodDef reader_methods[] = {
    {"poll", (PyCFunction)(void (*)(void))reader_poll, METH_VARARGS | METH_KEYWORDS,
     "poll(timeout=0.1, max_events=0) -> list of Event; waits with the GIL released"},
    {"stop", (PyCFunction)reader_stop, METH_NOARGS, "wake a poll() in another thread and make it return"},
    {"resume", (PyCFunction)reader_resume, METH_NOARGS, "undo stop()"},
    {"seek", (PyCFunction)reader_seek, METH_O,
     "seek(n) -> cursor: continue from event n (at most write_seq); lapped events count as missed"},
    {"health", (PyCFunction)reader_health, METH_NOARGS, "status: 0 ok, 11 stale, 12 closed, 13 replaced"},
    {"heartbeat_age_ns", (PyCFunction)reader_heartbeat_age_ns, METH_NOARGS,
     "ns the writer has shown no sign of life (a heartbeat ahead of our clock counts only when it changes)"},
    {"close", (PyCFunction)reader_close, METH_NOARGS, "unmap the ring"},
    {NULL}};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "kindlyguard_monitor._ring.Reader",
    .tp_basicsize = sizeof(ReaderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Reader(path, start='oldest', spin_ns=50000, adaptive=True, batch=2048)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)reader_init,
    .tp_dealloc = (destructor)reader_dealloc,
    .tp_methods = reader_methods,
    .tp_getset = reader_getset,
};

/* ------------------------------------------------------------------ V1Reader */

/* The Shield's v1 ring, read-only (kg_v1.h): the same poll()/stop()/seek()
 * surface as Reader, so kindlyguard_monitor.ring's follower drives either. */
typedef struct {
    PyObject_HEAD
    kg_v1_reader r;
    kg_wait wait;
    int open;
    int in_poll;
    volatile int stop;
    uint64_t poll_min_ns, poll_max_ns, poll_idle_ns;
    kg_event *events;
    uint8_t *text;
    size_t capacity, text_capacity;
    HistObject *transport;
    HistObject *delivery;
    SourceCache sources;
} V1ReaderObject;

static void v1_release(V1ReaderObject *self) {
    if (self->open) kg_v1_close(&self->r);
    self->open = 0;
    source_cache_clear(&self->sources);
}

static int v1_init(V1ReaderObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", "start", "poll_min_ns", "poll_max_ns", "poll_idle_ns", "batch", NULL};
    PyObject *path_obj;
    const char *start = "oldest";
    unsigned long long poll_min = KG_V1_POLL_MIN_NS, poll_max = KG_V1_POLL_MAX_NS, poll_idle = KG_V1_POLL_IDLE_NS;
    Py_ssize_t batch = 2048;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|sKKKn", kwlist, PyUnicode_FSConverter, &path_obj, &start,
                                     &poll_min, &poll_max, &poll_idle, &batch))
        return -1;
    const char *problem = NULL;
    if (self->in_poll) problem = "poll() is running in another thread: stop() it first";
    else if (strcmp(start, "oldest") != 0 && strcmp(start, "newest") != 0) problem = "start is 'oldest' or 'newest'";
    else if (batch < 1 || batch > 1 << 20) problem = "batch is 1..1048576";
    else if (poll_min < 1000 || poll_max < poll_min || poll_idle < poll_max || poll_idle > 1000000000ull)
        problem = "poll_min_ns >= 1000 <= poll_max_ns <= poll_idle_ns <= 1 s";
    if (problem) {
        Py_DECREF(path_obj);
        PyErr_SetString(self->in_poll ? PyExc_RuntimeError : PyExc_ValueError, problem);
        return -1;
    }
    v1_release(self);
    if (!self->transport) self->transport = (HistObject *)hist_new(&HistType, NULL, NULL);
    if (!self->delivery) self->delivery = (HistObject *)hist_new(&HistType, NULL, NULL);
    if (!self->transport || !self->delivery) {
        Py_DECREF(path_obj);
        return -1;
    }
    self->r.transport = &self->transport->h;
    char err[KG_ERRLEN] = "";
    kg_status st;
    int start_at = strcmp(start, "newest") == 0 ? KG_START_NEWEST : KG_START_OLDEST;
    Py_BEGIN_ALLOW_THREADS st = kg_v1_open(&self->r, PyBytes_AS_STRING(path_obj), start_at, err, sizeof err);
    Py_END_ALLOW_THREADS Py_DECREF(path_obj);
    if (st != KG_OK) {
        raise_status(st, err);
        return -1;
    }
    self->open = 1;
    self->poll_min_ns = poll_min;
    self->poll_max_ns = poll_max;
    self->poll_idle_ns = poll_idle;
    kg_wait_init(&self->wait, poll_min, 1);
    self->wait.stop = &self->stop;
    self->stop = 0;
    PyMem_Free(self->events);
    PyMem_Free(self->text);
    self->events = PyMem_Malloc((size_t)batch * sizeof(kg_event));
    self->text = PyMem_Malloc((size_t)batch * KG_V1_TEXT_MAX);
    if (!self->events || !self->text) {
        v1_release(self);
        PyErr_NoMemory();
        return -1;
    }
    self->capacity = (size_t)batch;
    self->text_capacity = (size_t)batch * KG_V1_TEXT_MAX;
    return 0;
}

static void v1_dealloc(V1ReaderObject *self) {
    v1_release(self);
    PyMem_Free(self->events);
    PyMem_Free(self->text);
    Py_XDECREF(self->transport);
    Py_XDECREF(self->delivery);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* poll(timeout=0.1, max_events=0) -> [Event, ...]: reads, and when there was
 * nothing, polls adaptively (kg_v1_wait) with the GIL released. */
static PyObject *v1_poll(V1ReaderObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"timeout", "max_events", NULL};
    double timeout = 0.1;
    Py_ssize_t max_events = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|dn", kwlist, &timeout, &max_events)) return NULL;
    READER_OPEN(self);
    if (self->in_poll) return PyErr_Format(PyExc_RuntimeError, "poll() is already running in another thread");
    uint64_t timeout_ns = timeout <= 0 ? 0 : (uint64_t)(timeout * 1e9);
    kg_batch b = {.events = self->events, .capacity = self->capacity, .text = self->text,
                  .text_capacity = self->text_capacity};
    if (max_events > 0 && (size_t)max_events < b.capacity) b.capacity = (size_t)max_events;
    self->in_poll = 1;
    kg_status st;
    Py_BEGIN_ALLOW_THREADS;
    st = kg_v1_read(&self->r, &b);
    if (st == KG_OK && b.count == 0 && timeout_ns && !self->stop) {
        st = kg_v1_wait(&self->r, &self->wait, timeout_ns, self->poll_min_ns, self->poll_max_ns, self->poll_idle_ns);
        if (st == KG_OK) st = kg_v1_read(&self->r, &b);
    }
    Py_END_ALLOW_THREADS;
    self->in_poll = 0;
    if (st == KG_TRUNCATED) return raise_status(st, "the file shrank under the reader");
    return events_list(&b, &self->sources, self->delivery, self->r.opened_mono_ns);
}

static PyObject *v1_stop(V1ReaderObject *self, PyObject *unused) {
    self->stop = 1; /* the poll loop looks at it between naps (at most poll_max_ns) */
    Py_RETURN_NONE;
}

static PyObject *v1_resume(V1ReaderObject *self, PyObject *unused) {
    self->stop = 0;
    Py_RETURN_NONE;
}

/* seek(n, fingerprint=None) -> cursor; fingerprint (timestamp_us, checksum) of
 * event n - 1 as seen before lets the next read notice a reset since. */
static PyObject *v1_seek(V1ReaderObject *self, PyObject *args) {
    unsigned long long n, ts = 0;
    unsigned int sum = 0;
    PyObject *fp = Py_None;
    if (!PyArg_ParseTuple(args, "K|O", &n, &fp)) return NULL;
    READER_OPEN(self);
    if (self->in_poll) return PyErr_Format(PyExc_RuntimeError, "seek() while poll() runs in another thread");
    if (fp != Py_None && !PyArg_ParseTuple(fp, "KI", &ts, &sum)) return NULL;
    if (kg_v1_seek(&self->r, n, fp != Py_None, ts, sum) != KG_OK)
        return raise_status(KG_TRUNCATED, "the file shrank under the reader");
    return PyLong_FromUnsignedLongLong(self->r.cursor);
}

static PyObject *v1_health(V1ReaderObject *self, PyObject *unused) {
    READER_OPEN(self);
    kg_status st;
    Py_BEGIN_ALLOW_THREADS st = kg_v1_health(&self->r);
    Py_END_ALLOW_THREADS return PyLong_FromLong((long)st);
}

static PyObject *v1_close(V1ReaderObject *self, PyObject *unused) {
    if (self->in_poll) return PyErr_Format(PyExc_RuntimeError, "close() while poll() runs: call stop() first");
    v1_release(self);
    Py_RETURN_NONE;
}

/* header() -> dict of the header's fields as they are now (relaxed loads). */
static PyObject *v1_header(V1ReaderObject *self, PyObject *unused) {
    READER_OPEN(self);
    kg_v1_header h;
    if (kg_v1_header_copy(&self->r, &h) != KG_OK) return raise_status(KG_TRUNCATED, "the file shrank under the reader");
    return Py_BuildValue("{sIsIsKsKsKsKsKsKsI}", "magic", h.magic, "version", h.version, "total_size",
                         (unsigned long long)h.total_size, "write_pos", (unsigned long long)h.write_pos, "read_pos",
                         (unsigned long long)h.read_pos, "events_written", (unsigned long long)h.events_written,
                         "events_read", (unsigned long long)h.events_read, "last_heartbeat",
                         (unsigned long long)h.last_heartbeat, "writer_pid", (unsigned int)h.writer_pid);
}

static PyObject *v1_get_u64(V1ReaderObject *self, void *offset) {
    READER_OPEN(self);
    return PyLong_FromUnsignedLongLong(*(uint64_t *)((char *)&self->r + (size_t)offset));
}
static PyObject *v1_get_write_seq(V1ReaderObject *self, void *c) {
    READER_OPEN(self);
    uint64_t w;
    if (kg_v1_events_written(&self->r, &w) != KG_OK) return raise_status(KG_TRUNCATED, "the file shrank under the reader");
    return PyLong_FromUnsignedLongLong(w);
}
static PyObject *v1_get_writer_pid(V1ReaderObject *self, void *c) {
    READER_OPEN(self);
    return PyLong_FromUnsignedLong(self->r.writer_pid); /* as last read (a header that faults is not read) */
}
static PyObject *v1_get_fingerprint(V1ReaderObject *self, void *c) {
    READER_OPEN(self);
    if (!self->r.fp_valid) Py_RETURN_NONE;
    return Py_BuildValue("(KI)", (unsigned long long)self->r.fp_timestamp, (unsigned int)self->r.fp_checksum);
}
static PyObject *v1_get_file_id(V1ReaderObject *self, void *c) {
    READER_OPEN(self);
    return Py_BuildValue("(KK)", (unsigned long long)self->r.map.id.dev, (unsigned long long)self->r.map.id.ino);
}
static PyObject *v1_get_hist(V1ReaderObject *self, void *which) {
    HistObject *h = which ? self->delivery : self->transport;
    if (!h) {
        PyErr_SetString(PyExc_ValueError, "the reader was never opened");
        return NULL;
    }
    return Py_NewRef((PyObject *)h);
}
static PyObject *v1_get_closed(V1ReaderObject *self, void *c) { return PyBool_FromLong(!self->open); }
static PyObject *v1_get_none(V1ReaderObject *self, void *c) { Py_RETURN_NONE; }
static PyObject *v1_get_format(V1ReaderObject *self, void *c) { return PyLong_FromLong(1); }
static PyObject *v1_get_poll_step(V1ReaderObject *self, void *c) { return PyLong_FromUnsignedLongLong(self->wait.spin_ns); }
static PyObject *v1_get_wait_stats(V1ReaderObject *self, void *c) {
    return Py_BuildValue("(KK)", (unsigned long long)self->wait.spins_won, (unsigned long long)self->wait.sleeps);
}

#define V1U64(name, doc) {#name, (getter)v1_get_u64, NULL, doc, (void *)offsetof(kg_v1_reader, name)}
static PyGetSetDef v1_getset[] = {
    V1U64(delivered, "events delivered so far"),
    V1U64(missed, "events lost to laps and resets before this reader read them"),
    V1U64(corrupt, "events that failed the checksum or severity check, or lay across the end of the file"),
    V1U64(resets, "times the ring was re-initialised under this reader"),
    V1U64(cursor, "number (events_written value) of the next event this reader will read"),
    V1U64(data_size, "bytes of the data area (positions wrap here)"),
    V1U64(capacity, "whole events the data area holds"),
    {"write_seq", (getter)v1_get_write_seq, NULL, "events_written: events the writers have written", NULL},
    {"writer_pid", (getter)v1_get_writer_pid, NULL, "the header's writer_pid (the pid that initialised it)", NULL},
    {"generation", (getter)v1_get_none, NULL, "None: v1 has no generation", NULL},
    {"format", (getter)v1_get_format, NULL, "1", NULL},
    {"fingerprint", (getter)v1_get_fingerprint, NULL, "(timestamp_us, checksum) of the event before the cursor, or None", NULL},
    {"file_id", (getter)v1_get_file_id, NULL, "(device, inode) of the mapped file", NULL},
    {"poll_step_ns", (getter)v1_get_poll_step, NULL, "current polling interval", NULL},
    {"wait_stats", (getter)v1_get_wait_stats, NULL, "(polls that found data, naps)", NULL},
    {"transport_latency", (getter)v1_get_hist, NULL, "Histogram: stored timestamp -> seen by the C reader", NULL},
    {"delivery_latency", (getter)v1_get_hist, NULL, "Histogram: stored timestamp -> Python objects built", (void *)1},
    {"closed", (getter)v1_get_closed, NULL, NULL, NULL},
    {NULL}};

static PyMethodDef v1_methods[] = {
    {"poll", (PyCFunction)(void (*)(void))v1_poll, METH_VARARGS | METH_KEYWORDS,
     "poll(timeout=0.1, max_events=0) -> list of Event; polls adaptively with the GIL released"},
    {"stop", (PyCFunction)v1_stop, METH_NOARGS, "make a poll() in another thread return"},
    {"resume", (PyCFunction)v1_resume, METH_NOARGS, "undo stop()"},
    {"seek", (PyCFunction)v1_seek, METH_VARARGS, "seek(n, fingerprint=None) -> cursor"},
    {"health", (PyCFunction)v1_health, METH_NOARGS, "status: 0 ok, 13 replaced, 17 truncated, 7/8 rewritten"},
    {"header", (PyCFunction)v1_header, METH_NOARGS, "the header's fields now, as a dict"},
    {"close", (PyCFunction)v1_close, METH_NOARGS, "unmap the ring"},
    {NULL}};

static PyTypeObject V1ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "kindlyguard_monitor._ring.V1Reader",
    .tp_basicsize = sizeof(V1ReaderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "V1Reader(path, start='oldest', poll_min_ns=20000, poll_max_ns=1500000, poll_idle_ns=64000000, "
              "batch=2048): "
              "the Shield's v1 ring, read-only, never consumed",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)v1_init,
    .tp_dealloc = (destructor)v1_dealloc,
    .tp_methods = v1_methods,
    .tp_getset = v1_getset,
};

/* v1_checksum(event_bytes) -> int: the spec's checksum of a 344-byte event (tests, the demo writer). */
static PyObject *mod_v1_checksum(PyObject *m, PyObject *arg) {
    Py_buffer buf;
    if (PyObject_GetBuffer(arg, &buf, PyBUF_SIMPLE) < 0) return NULL;
    if (buf.len < (Py_ssize_t)KG_V1_EVENT_SIZE) {
        PyBuffer_Release(&buf);
        return PyErr_Format(PyExc_ValueError, "a v1 event is %u bytes", KG_V1_EVENT_SIZE);
    }
    kg_v1_event e;
    memcpy(&e, buf.buf, sizeof e);
    PyBuffer_Release(&buf);
    return PyLong_FromUnsignedLong(kg_v1_checksum(&e));
}

/* ------------------------------------------------------------------ module functions */

/* floor_read(path, count, spin=True, timeout=10.0)
 *     -> (delivered, missed, corrupt, Histogram, cpu_ns, busy_ns)
 * busy_ns runs from the first event seen to the last one accounted for.
 * The bench's bare C reader: opens at the newest event and reads `count`
 * events with no Python per event, spinning (spin=True) or sleeping on the
 * futex at once (spin=False). */
static PyObject *mod_floor_read(PyObject *m, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", "count", "spin", "timeout", NULL};
    PyObject *path_obj;
    unsigned long long count;
    int spin = 1;
    double timeout = 10.0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&K|pd", kwlist, PyUnicode_FSConverter, &path_obj, &count, &spin,
                                     &timeout))
        return NULL;
    HistObject *hist = (HistObject *)hist_new(&HistType, NULL, NULL);
    if (!hist) {
        Py_DECREF(path_obj);
        return NULL;
    }
    kg_reader r = {.transport = &hist->h};
    kg_wait w;
    kg_wait_init(&w, spin ? UINT64_MAX / 4 : 0, 0);
    enum { CAP = 256 };
    static kg_event events[CAP]; /* bench only; serialised by the GIL around open */
    uint8_t *text = NULL;
    char err[KG_ERRLEN] = "";
    kg_status st;
    uint64_t cpu0 = 0, cpu1 = 0, first = 0, last = 0;
    Py_BEGIN_ALLOW_THREADS;
    st = kg_reader_open(&r, PyBytes_AS_STRING(path_obj), KG_START_NEWEST, err, sizeof err);
    if (st == KG_OK) {
        size_t text_cap = CAP * (size_t)(r.slot_size - KG_SLOT_TEXT_OFFSET);
        text = malloc(text_cap);
        kg_batch b = {.events = events, .capacity = CAP, .text = text, .text_capacity = text_cap};
        const uint64_t deadline = kg_mono_ns() + (uint64_t)(timeout * 1e9);
        cpu0 = kg_thread_cpu_ns();
        while (r.delivered + r.missed + r.corrupt < count) {
            kg_reader_read(&r, &b);
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
        }
        cpu1 = kg_thread_cpu_ns();
    }
    Py_END_ALLOW_THREADS;
    Py_DECREF(path_obj);
    free(text);
    if (st != KG_OK) {
        Py_DECREF(hist);
        return raise_status(st, err);
    }
    PyObject *res = Py_BuildValue("(KKKOKK)", (unsigned long long)r.delivered, (unsigned long long)r.missed,
                                  (unsigned long long)r.corrupt, (PyObject *)hist, (unsigned long long)(cpu1 - cpu0),
                                  (unsigned long long)(last - first));
    Py_DECREF(hist);
    kg_reader_close(&r);
    return res;
}

static PyObject *mod_crc32c(PyObject *m, PyObject *args) {
    Py_buffer buf;
    unsigned int crc = 0;
    int table = 0;
    if (!PyArg_ParseTuple(args, "y*|Ip", &buf, &crc, &table)) return NULL;
    uint32_t out = table ? kg_crc32c_table(crc, buf.buf, (size_t)buf.len) : kg_crc32c(crc, buf.buf, (size_t)buf.len);
    PyBuffer_Release(&buf);
    return PyLong_FromUnsignedLong(out);
}

static PyObject *mod_mono_ns(PyObject *m, PyObject *unused) { return PyLong_FromUnsignedLongLong(kg_mono_ns()); }

static PyMethodDef module_methods[] = {
    {"floor_read", (PyCFunction)(void (*)(void))mod_floor_read, METH_VARARGS | METH_KEYWORDS,
     "floor_read(path, count, spin=True, timeout=10.0) -> (delivered, missed, corrupt, Histogram, cpu_ns, busy_ns)"},
    {"crc32c", mod_crc32c, METH_VARARGS, "crc32c(data, crc=0, table=False) -> int"},
    {"mono_ns", mod_mono_ns, METH_NOARGS, "the ring's monotonic clock, ns"},
    {"v1_checksum", mod_v1_checksum, METH_O, "v1_checksum(event_bytes) -> the v1 event checksum"},
    {NULL}};

static int module_exec(PyObject *m) {
    if (PyType_Ready(&HistType) < 0 || PyType_Ready(&WriterType) < 0 || PyType_Ready(&ReaderType) < 0 ||
        PyType_Ready(&V1ReaderType) < 0)
        return -1;
    if (!EventType) {
        EventType = PyStructSequence_NewType(&event_desc);
        if (!EventType) return -1;
    }
    if (!RingErr) {
        RingErr = PyErr_NewExceptionWithDoc("kindlyguard_monitor._ring.Error", "A ring call failed: args are (status, detail).",
                                            PyExc_OSError, NULL);
        if (!RingErr) return -1;
    }
    if (PyModule_AddObjectRef(m, "Histogram", (PyObject *)&HistType) < 0 ||
        PyModule_AddObjectRef(m, "Writer", (PyObject *)&WriterType) < 0 ||
        PyModule_AddObjectRef(m, "Reader", (PyObject *)&ReaderType) < 0 ||
        PyModule_AddObjectRef(m, "V1Reader", (PyObject *)&V1ReaderType) < 0 ||
        PyModule_AddObjectRef(m, "Event", (PyObject *)EventType) < 0 ||
        PyModule_AddObjectRef(m, "Error", RingErr) < 0)
        return -1;
    PyModule_AddIntConstant(m, "CRC_HARDWARE", kg_crc32c_is_hardware());
    PyModule_AddIntConstant(m, "SHARED_FUTEX", KG_HAVE_SHARED_FUTEX);
    PyModule_AddIntConstant(m, "HIST_BUCKETS", KG_HIST_BUCKETS);
    PyModule_AddIntConstant(m, "V1_HEADER_SIZE", KG_V1_HEADER_SIZE);
    PyModule_AddIntConstant(m, "V1_EVENT_SIZE", KG_V1_EVENT_SIZE);
    return 0;
}

static PyModuleDef_Slot module_slots[] = {{Py_mod_exec, module_exec}, {0, NULL}};

static struct PyModuleDef ring_module = {
    PyModuleDef_HEAD_INIT, .m_name = "kindlyguard_monitor._ring", .m_doc = "KindlyGuard ring v2 in C (native/).",
    .m_size = 0, .m_methods = module_methods, .m_slots = module_slots};

PyMODINIT_FUNC PyInit__ring(void) { return PyModuleDef_Init(&ring_module); }
