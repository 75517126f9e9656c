/* py_histogram.c - _ring.Histogram: a kg_hist (kg_hist.h) for Python. */
#include "kgpy.h"

static PyObject *hist_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    HistObject *self = (HistObject *)type->tp_alloc(type, 0);
    if (self) kg_hist_reset(&self->h);
    return (PyObject *)self;
}

HistObject *kgpy_hist_new(void) { return (HistObject *)hist_new(&kgpy_HistType, NULL, NULL); }

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
    if (!PyObject_TypeCheck(other, &kgpy_HistType)) return PyErr_Format(PyExc_TypeError, "merge() takes a Histogram");
    kg_hist_merge(&self->h, &((HistObject *)other)->h);
    Py_RETURN_NONE;
}

static PyObject *hist_copy(HistObject *self, PyObject *unused) {
    HistObject *c = kgpy_hist_new();
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

PyTypeObject kgpy_HistType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "kindlyguard_monitor._ring.Histogram",
    .tp_basicsize = sizeof(HistObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Log-linear latency histogram in nanoseconds (kg_hist.h).",
    .tp_new = hist_new,
    .tp_methods = hist_methods,
    .tp_getset = hist_getset,
};
