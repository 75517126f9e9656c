/* py_reader.c - _ring.Reader: the v2 ring's reader (kg_reader) and its wait
 * (kg_wait: spin, then the shared futex) for Python. poll(), stop() and the
 * Event list are py_poller.c's, shared with V1Reader. */
#include "kgpy.h"
#include "kg_atomic.h"

typedef struct {
    PyObject_HEAD
    kgpy_poller p;
    kg_reader r;
} ReaderObject;

static kg_status reader_read(void *owner, kg_batch *b) { return kg_reader_read(&((ReaderObject *)owner)->r, b); }

static kg_status reader_wait(void *owner, uint64_t timeout_ns) {
    ReaderObject *self = owner;
    return kg_wait_for_data(&self->r, &self->p.wait_state, timeout_ns);
}

/* stop()'s wake-up: the flag is visible before the futex wake of our own waiter. */
static void reader_wake(void *owner) {
    ReaderObject *self = owner;
    kg_fence_seqcst();
    if (self->r.hdr) kg_futex_wake_all(&self->r.hdr->wake_seq);
}

static void reader_release(ReaderObject *self) {
    if (self->p.open) kg_reader_close(&self->r);
    kgpy_poller_closed(&self->p);
}

static int reader_init(ReaderObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", "start", "spin_ns", "adaptive", "batch", NULL};
    PyObject *path_obj;
    const char *start = "oldest";
    unsigned long long spin_ns = 50000;
    int adaptive = 1, start_at;
    Py_ssize_t batch = 2048;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|sKpn", kwlist, PyUnicode_FSConverter, &path_obj, &start, &spin_ns,
                                     &adaptive, &batch))
        return -1;
    if ((start_at = kgpy_parse_start(start)) < 0 || kgpy_parse_batch(batch) < 0 || kgpy_poller_reopen(&self->p) < 0) {
        Py_DECREF(path_obj);
        return -1;
    }
    reader_release(self);
    self->p.read = reader_read;
    self->p.wait = reader_wait;
    self->p.wake = reader_wake;
    self->p.owner = self;
    self->r.transport = &self->p.transport->h;
    char err[KG_ERRLEN] = "";
    kg_status st;
    Py_BEGIN_ALLOW_THREADS st = kg_reader_open(&self->r, PyBytes_AS_STRING(path_obj), start_at, err, sizeof err);
    Py_END_ALLOW_THREADS Py_DECREF(path_obj);
    if (st != KG_OK) {
        kgpy_raise(st, err);
        return -1;
    }
    kg_wait_init(&self->p.wait_state, spin_ns, adaptive);
    if (kgpy_poller_opened(&self->p, (size_t)batch, self->r.slot_size - KG_SLOT_TEXT_OFFSET, self->r.opened_mono_ns) <
        0) {
        reader_release(self);
        return -1;
    }
    return 0;
}

static void reader_dealloc(ReaderObject *self) {
    reader_release(self);
    kgpy_poller_dealloc(&self->p);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *reader_poll(ReaderObject *self, PyObject *args, PyObject *kw) {
    return kgpy_poller_poll(&self->p, args, kw);
}
static PyObject *reader_stop(ReaderObject *self, PyObject *unused) { return kgpy_poller_stop(&self->p); }
static PyObject *reader_resume(ReaderObject *self, PyObject *unused) { return kgpy_poller_resume(&self->p); }

static PyObject *reader_seek(ReaderObject *self, PyObject *arg) {
    if (kgpy_poller_check(&self->p, "seek()") < 0) return NULL;
    unsigned long long n = PyLong_AsUnsignedLongLong(arg);
    if (n == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    kg_reader_seek(&self->r, n);
    return PyLong_FromUnsignedLongLong(self->r.cursor);
}

static PyObject *reader_health(ReaderObject *self, PyObject *unused) {
    if (kgpy_poller_check(&self->p, NULL) < 0) return NULL;
    kg_status st;
    Py_BEGIN_ALLOW_THREADS st = kg_reader_health(&self->r, kg_mono_ns());
    Py_END_ALLOW_THREADS return PyLong_FromLong((long)st);
}

static PyObject *reader_close(ReaderObject *self, PyObject *unused) {
    if (self->p.in_poll) return PyErr_Format(PyExc_RuntimeError, "close() while poll() runs: call stop() first");
    reader_release(self);
    Py_RETURN_NONE;
}

static PyObject *reader_heartbeat_age_ns(ReaderObject *self, PyObject *unused) {
    if (kgpy_poller_check(&self->p, NULL) < 0) return NULL;
    uint64_t age = kg_reader_heartbeat_age(&self->r, kg_mono_ns());
    if (age == UINT64_MAX) return kgpy_raise(KG_TRUNCATED, KGPY_SHRANK);
    return PyLong_FromUnsignedLongLong(age);
}

static PyObject *reader_get_u64(ReaderObject *self, void *offset) {
    if (kgpy_poller_check(&self->p, NULL) < 0) return NULL;
    return PyLong_FromUnsignedLongLong(*(uint64_t *)((char *)&self->r + (size_t)offset));
}
static PyObject *reader_get_u32(ReaderObject *self, void *offset) {
    if (kgpy_poller_check(&self->p, NULL) < 0) return NULL;
    return PyLong_FromUnsignedLong(*(uint32_t *)((char *)&self->r + (size_t)offset));
}
static PyObject *reader_get_write_seq(ReaderObject *self, void *c) {
    if (kgpy_poller_check(&self->p, NULL) < 0) return NULL;
    return PyLong_FromUnsignedLongLong(kg_reader_write_seq(&self->r));
}
static PyObject *reader_get_writer_counter(ReaderObject *self, void *which) {
    if (kgpy_poller_check(&self->p, NULL) < 0) return NULL;
    kg_vitals v;
    if (kg_reader_vitals(&self->r, &v) != KG_OK) return kgpy_raise(KG_TRUNCATED, KGPY_SHRANK);
    return PyLong_FromUnsignedLongLong(which ? v.writer_truncated : v.writer_dropped);
}
static PyObject *reader_get_spin_ns(ReaderObject *self, void *c) {
    return PyLong_FromUnsignedLongLong(self->p.wait_state.spin_ns);
}
static PyObject *reader_get_wait_stats(ReaderObject *self, void *c) { return kgpy_poller_wait_stats(&self->p); }
static PyObject *reader_get_hist(ReaderObject *self, void *which) { return kgpy_poller_hist(&self->p, which != NULL); }
static PyObject *reader_get_closed(ReaderObject *self, void *c) { return PyBool_FromLong(!self->p.open); }

static PyObject *reader_get_max_stall(ReaderObject *self, void *c) { return kgpy_poller_max_stall(&self->p, 0); }
static PyObject *reader_reset_stall(ReaderObject *self, PyObject *unused) { return kgpy_poller_max_stall(&self->p, 1); }

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
    {"max_stall_ns", (getter)reader_get_max_stall, NULL,
     "longest time between two polls' visits to C (the GIL, building events, the caller's Python)", NULL},
    {"closed", (getter)reader_get_closed, NULL, NULL, NULL},
    {NULL}};

static PyMethodDef reader_methods[] = {
    {"poll", (PyCFunction)(void (*)(void))reader_poll, METH_VARARGS | METH_KEYWORDS, KGPY_POLL_DOC},
    {"stop", (PyCFunction)reader_stop, METH_NOARGS, "wake a poll() in another thread and make it return"},
    {"resume", (PyCFunction)reader_resume, METH_NOARGS, "undo stop()"},
    {"seek", (PyCFunction)reader_seek, METH_O,
     "seek(n) -> cursor: continue from event n (at most write_seq); lapped events count as missed"},
    {"health", (PyCFunction)reader_health, METH_NOARGS, "status: 0 ok, 11 stale, 12 closed, 13 replaced"},
    {"heartbeat_age_ns", (PyCFunction)reader_heartbeat_age_ns, METH_NOARGS,
     "ns the writer has shown no sign of life (a heartbeat ahead of our clock counts only when it changes)"},
    {"reset_stall", (PyCFunction)reader_reset_stall, METH_NOARGS, "max_stall_ns so far, then start over"},
    {"close", (PyCFunction)reader_close, METH_NOARGS, "unmap the ring"},
    {NULL}};

PyTypeObject kgpy_ReaderType = {
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
