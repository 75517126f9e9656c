/* py_v1_reader.c - _ring.V1Reader: the Shield's v1 ring, read-only
 * (kg_v1.h), with the same poll()/stop()/seek() surface as Reader (both use
 * py_poller.c), so kindlyguard_monitor.ring's follower drives either. v1 has
 * no wake-up: its wait polls adaptively (kg_v1_wait). */
#include "kgpy.h"
#include "kg_v1.h"

typedef struct {
    PyObject_HEAD
    kgpy_poller p;
    kg_v1_reader r;
    uint64_t poll_min_ns, poll_max_ns, poll_idle_ns;
} V1ReaderObject;

static kg_status v1_read(void *owner, kg_batch *b) { return kg_v1_read(&((V1ReaderObject *)owner)->r, b); }

static kg_status v1_wait(void *owner, uint64_t timeout_ns) {
    V1ReaderObject *self = owner;
    return kg_v1_wait(&self->r, &self->p.wait_state, timeout_ns, self->poll_min_ns, self->poll_max_ns,
                      self->poll_idle_ns);
}

static void v1_release(V1ReaderObject *self) {
    if (self->p.open) kg_v1_close(&self->r);
    kgpy_poller_closed(&self->p);
}

static int v1_init(V1ReaderObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", "start", "poll_min_ns", "poll_max_ns", "poll_idle_ns", "batch", NULL};
    PyObject *path_obj;
    const char *start = "oldest";
    unsigned long long poll_min = KG_V1_POLL_MIN_NS, poll_max = KG_V1_POLL_MAX_NS, poll_idle = KG_V1_POLL_IDLE_NS;
    Py_ssize_t batch = 2048;
    int start_at;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|sKKKn", kwlist, PyUnicode_FSConverter, &path_obj, &start,
                                     &poll_min, &poll_max, &poll_idle, &batch))
        return -1;
    if ((start_at = kgpy_parse_start(start)) < 0 || kgpy_parse_batch(batch) < 0 || kgpy_poller_reopen(&self->p) < 0) {
        Py_DECREF(path_obj);
        return -1;
    }
    if (poll_min < 1000 || poll_max < poll_min || poll_idle < poll_max || poll_idle > 1000000000ull) {
        Py_DECREF(path_obj);
        PyErr_SetString(PyExc_ValueError, "poll_min_ns >= 1000 <= poll_max_ns <= poll_idle_ns <= 1 s");
        return -1;
    }
    v1_release(self);
    self->p.read = v1_read;
    self->p.wait = v1_wait;
    self->p.wake = NULL; /* the poll loop looks at the stop flag between naps (at most poll_idle_ns) */
    self->p.owner = self;
    self->r.transport = &self->p.transport->h;
    char err[KG_ERRLEN] = "";
    kg_status st;
    Py_BEGIN_ALLOW_THREADS st = kg_v1_open(&self->r, PyBytes_AS_STRING(path_obj), start_at, err, sizeof err);
    Py_END_ALLOW_THREADS Py_DECREF(path_obj);
    if (st != KG_OK) {
        kgpy_raise(st, err);
        return -1;
    }
    self->poll_min_ns = poll_min;
    self->poll_max_ns = poll_max;
    self->poll_idle_ns = poll_idle;
    kg_wait_init(&self->p.wait_state, poll_min, 1);
    if (kgpy_poller_opened(&self->p, (size_t)batch, KG_V1_TEXT_MAX, self->r.opened_mono_ns) < 0) {
        v1_release(self);
        return -1;
    }
    return 0;
}

static void v1_dealloc(V1ReaderObject *self) {
    v1_release(self);
    kgpy_poller_dealloc(&self->p);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *v1_poll(V1ReaderObject *self, PyObject *args, PyObject *kw) {
    return kgpy_poller_poll(&self->p, args, kw);
}
static PyObject *v1_stop(V1ReaderObject *self, PyObject *unused) { return kgpy_poller_stop(&self->p); }
static PyObject *v1_resume(V1ReaderObject *self, PyObject *unused) { return kgpy_poller_resume(&self->p); }

/* seek(n, fingerprint=None) -> cursor; fingerprint (timestamp_us, checksum) of
 * event n - 1 as seen before lets the next read notice a reset since. */
static PyObject *v1_seek(V1ReaderObject *self, PyObject *args) {
    unsigned long long n, ts = 0;
    unsigned int sum = 0;
    PyObject *fp = Py_None;
    if (!PyArg_ParseTuple(args, "K|O", &n, &fp)) return NULL;
    if (kgpy_poller_check(&self->p, "seek()") < 0) return NULL;
    if (fp != Py_None && !PyArg_ParseTuple(fp, "KI", &ts, &sum)) return NULL;
    if (kg_v1_seek(&self->r, n, fp != Py_None, ts, sum) != KG_OK) return kgpy_raise(KG_TRUNCATED, KGPY_SHRANK);
    return PyLong_FromUnsignedLongLong(self->r.cursor);
}

static PyObject *v1_health(V1ReaderObject *self, PyObject *unused) {
    if (kgpy_poller_check(&self->p, NULL) < 0) return NULL;
    kg_status st;
    Py_BEGIN_ALLOW_THREADS st = kg_v1_health(&self->r);
    Py_END_ALLOW_THREADS return PyLong_FromLong((long)st);
}

static PyObject *v1_close(V1ReaderObject *self, PyObject *unused) {
    if (self->p.in_poll) return PyErr_Format(PyExc_RuntimeError, "close() while poll() runs: call stop() first");
    v1_release(self);
    Py_RETURN_NONE;
}

/* header() -> dict of the header's fields as they are now (relaxed loads). */
static PyObject *v1_header(V1ReaderObject *self, PyObject *unused) {
    if (kgpy_poller_check(&self->p, NULL) < 0) return NULL;
    kg_v1_header h;
    if (kg_v1_header_copy(&self->r, &h) != KG_OK) return kgpy_raise(KG_TRUNCATED, KGPY_SHRANK);
    return Py_BuildValue("{sIsIsKsKsKsKsKsKsI}", "magic", h.magic, "version", h.version, "total_size",
                         (unsigned long long)h.total_size, "write_pos", (unsigned long long)h.write_pos, "read_pos",
                         (unsigned long long)h.read_pos, "events_written", (unsigned long long)h.events_written,
                         "events_read", (unsigned long long)h.events_read, "last_heartbeat",
                         (unsigned long long)h.last_heartbeat, "writer_pid", (unsigned int)h.writer_pid);
}

static PyObject *v1_get_u64(V1ReaderObject *self, void *offset) {
    if (kgpy_poller_check(&self->p, NULL) < 0) return NULL;
    return PyLong_FromUnsignedLongLong(*(uint64_t *)((char *)&self->r + (size_t)offset));
}
static PyObject *v1_get_write_seq(V1ReaderObject *self, void *c) {
    if (kgpy_poller_check(&self->p, NULL) < 0) return NULL;
    uint64_t w;
    if (kg_v1_events_written(&self->r, &w) != KG_OK) return kgpy_raise(KG_TRUNCATED, KGPY_SHRANK);
    return PyLong_FromUnsignedLongLong(w);
}
static PyObject *v1_get_writer_pid(V1ReaderObject *self, void *c) {
    if (kgpy_poller_check(&self->p, NULL) < 0) return NULL;
    return PyLong_FromUnsignedLong(self->r.writer_pid); /* as last read (a header that faults is not read) */
}
static PyObject *v1_get_fingerprint(V1ReaderObject *self, void *c) {
    if (kgpy_poller_check(&self->p, NULL) < 0) return NULL;
    if (!self->r.fp_valid) Py_RETURN_NONE;
    return Py_BuildValue("(KI)", (unsigned long long)self->r.fp_timestamp, (unsigned int)self->r.fp_checksum);
}
static PyObject *v1_get_file_id(V1ReaderObject *self, void *c) {
    if (kgpy_poller_check(&self->p, NULL) < 0) return NULL;
    return Py_BuildValue("(KK)", (unsigned long long)self->r.map.id.dev, (unsigned long long)self->r.map.id.ino);
}
static PyObject *v1_get_hist(V1ReaderObject *self, void *which) { return kgpy_poller_hist(&self->p, which != NULL); }
static PyObject *v1_get_closed(V1ReaderObject *self, void *c) { return PyBool_FromLong(!self->p.open); }
static PyObject *v1_get_none(V1ReaderObject *self, void *c) { Py_RETURN_NONE; }
static PyObject *v1_get_format(V1ReaderObject *self, void *c) { return PyLong_FromLong(1); }
static PyObject *v1_get_poll_step(V1ReaderObject *self, void *c) {
    return PyLong_FromUnsignedLongLong(self->p.wait_state.spin_ns);
}
static PyObject *v1_get_wait_stats(V1ReaderObject *self, void *c) { return kgpy_poller_wait_stats(&self->p); }

static PyObject *v1_get_max_stall(V1ReaderObject *self, void *c) { return kgpy_poller_max_stall(&self->p, 0); }
static PyObject *v1_reset_stall(V1ReaderObject *self, PyObject *unused) { return kgpy_poller_max_stall(&self->p, 1); }

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
    {"max_stall_ns", (getter)v1_get_max_stall, NULL,
     "longest time between two polls' visits to C (the GIL, building events, the caller's Python)", NULL},
    {"closed", (getter)v1_get_closed, NULL, NULL, NULL},
    {NULL}};

static PyMethodDef v1_methods[] = {
    {"poll", (PyCFunction)(void (*)(void))v1_poll, METH_VARARGS | METH_KEYWORDS,
     KGPY_POLL_DOC},
    {"stop", (PyCFunction)v1_stop, METH_NOARGS, "make a poll() in another thread return"},
    {"resume", (PyCFunction)v1_resume, METH_NOARGS, "undo stop()"},
    {"seek", (PyCFunction)v1_seek, METH_VARARGS, "seek(n, fingerprint=None) -> cursor"},
    {"health", (PyCFunction)v1_health, METH_NOARGS, "status: 0 ok, 13 replaced, 17 truncated, 7/8 rewritten"},
    {"header", (PyCFunction)v1_header, METH_NOARGS, "the header's fields now, as a dict"},
    {"reset_stall", (PyCFunction)v1_reset_stall, METH_NOARGS, "max_stall_ns so far, then start over"},
    {"close", (PyCFunction)v1_close, METH_NOARGS, "unmap the ring"},
    {NULL}};

PyTypeObject kgpy_V1ReaderType = {
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
