/* py_writer.c - _ring.Writer: kg_writer for Python (publish a batch of
 * tuples, tick, close), and run_paced, the bench's C writer (kg_bench.c). */
#include "kgpy.h"
#include "kg_bench.h"

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
        kgpy_raise(st, err);
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
    if (self->w.broken) return kgpy_raise(self->w.broken, "the file shrank under the writer");
    return PyLong_FromSize_t(done);
}

static PyObject *writer_tick(WriterObject *self, PyObject *unused) {
    WRITER_OPEN(self);
    WRITER_IDLE(self);
    if (kg_writer_tick(&self->w) != KG_OK) return kgpy_raise(self->w.broken, "the file shrank under the writer");
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

/* run_paced(rate, count, batch_max=256, details_len=64) -> published
 * The bench's C writer (kg_bench.c): publishes `count` synthetic events at
 * `rate` per second (0 = as fast as it can), catching up in batches of at
 * most batch_max, with the GIL released the whole time. */
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
    uint64_t done;
    kg_status st;
    self->in_run = 1;
    Py_BEGIN_ALLOW_THREADS;
    done = kg_bench_run_paced(&self->w, rate, count, batch_max, details_len, &st);
    Py_END_ALLOW_THREADS;
    self->in_run = 0;
    if (st != KG_OK) return PyErr_NoMemory();
    if (self->w.broken) return kgpy_raise(self->w.broken, "the file shrank under the writer");
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
        return kgpy_raise(self->w.broken, "the file shrank under the writer");
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

PyTypeObject kgpy_WriterType = {
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
