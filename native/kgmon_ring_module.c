/* kgmon_ring_module.c - the module kindlyguard_monitor._ring: its table, its
 * functions and its init. The types live in py_*.c (kgpy.h says which); the
 * C library owns the speed; the kindlyguard_monitor.ring modules own the API
 * users see (names, exceptions with sentences).
 *
 *   Histogram, Writer, Reader, V1Reader, Event   the types
 *   floor_read()       the bench's bare C reader (kg_bench.c): no Python per event
 *   Error              raised with (status, detail); kindlyguard_monitor.ring maps it to RingError
 *   STATUS_<NAME>      every kg_status (kg_status.h), checked against ring/errors.py by the tests
 */
#include "kgpy.h"
#include "kg_bench.h"
#include "kg_v1.h"

PyObject *kgpy_Error;

PyObject *kgpy_raise(kg_status st, const char *detail) {
    PyObject *args = Py_BuildValue("(is)", (int)st, detail ? detail : "");
    if (args) {
        PyErr_SetObject(kgpy_Error, args);
        Py_DECREF(args);
    }
    return NULL;
}

/* floor_read(path, count, spin=True, timeout=10.0)
 *     -> (delivered, missed, corrupt, Histogram, cpu_ns, busy_ns, max_stall_ns, delivery Histogram)
 * busy_ns runs from the first event seen to the last one accounted for;
 * max_stall_ns is the longest time between two reads outside a wait.
 * Opens at the newest event and reads `count` events, spinning (spin=True)
 * or sleeping on the futex at once (spin=False), with the GIL released. */
static PyObject *mod_floor_read(PyObject *m, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", "count", "spin", "timeout", NULL};
    PyObject *path_obj;
    unsigned long long count;
    int spin = 1;
    double timeout = 10.0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&K|pd", kwlist, PyUnicode_FSConverter, &path_obj, &count, &spin,
                                     &timeout))
        return NULL;
    HistObject *hist = kgpy_hist_new(), *delivery = kgpy_hist_new();
    if (!hist || !delivery) {
        Py_XDECREF(hist);
        Py_XDECREF(delivery);
        Py_DECREF(path_obj);
        return NULL;
    }
    kg_floor_result res;
    char err[KG_ERRLEN] = "";
    kg_status st;
    uint64_t timeout_ns = timeout <= 0 ? 0 : (uint64_t)(timeout * 1e9);
    Py_BEGIN_ALLOW_THREADS;
    st = kg_bench_floor_read(PyBytes_AS_STRING(path_obj), count, spin, timeout_ns, &hist->h, &delivery->h, &res, err,
                             sizeof err);
    Py_END_ALLOW_THREADS;
    Py_DECREF(path_obj);
    if (st != KG_OK) {
        Py_DECREF(hist);
        Py_DECREF(delivery);
        return kgpy_raise(st, err);
    }
    PyObject *out = Py_BuildValue("(KKKOKKKO)", (unsigned long long)res.delivered, (unsigned long long)res.missed,
                                  (unsigned long long)res.corrupt, (PyObject *)hist, (unsigned long long)res.cpu_ns,
                                  (unsigned long long)res.busy_ns, (unsigned long long)res.max_stall_ns,
                                  (PyObject *)delivery);
    Py_DECREF(hist);
    Py_DECREF(delivery);
    return out;
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

static PyMethodDef module_methods[] = {
    {"floor_read", (PyCFunction)(void (*)(void))mod_floor_read, METH_VARARGS | METH_KEYWORDS,
     "floor_read(path, count, spin=True, timeout=10.0) -> (delivered, missed, corrupt, Histogram, cpu_ns, busy_ns, "
     "max_stall_ns, delivery Histogram)"},
    {"crc32c", mod_crc32c, METH_VARARGS, "crc32c(data, crc=0, table=False) -> int"},
    {"mono_ns", mod_mono_ns, METH_NOARGS, "the ring's monotonic clock, ns"},
    {"v1_checksum", mod_v1_checksum, METH_O, "v1_checksum(event_bytes) -> the v1 event checksum"},
    {"threat_events", kgpy_threat_events, METH_VARARGS,
     "threat_events(events, generation, transport, tail, event_type, key_type, keys=None) -> [event_type, ...]: "
     "event.from_ring()'s conversion, the records untracked by the cyclic GC"},
    {NULL}};

static int add_type(PyObject *m, const char *name, PyTypeObject *type) {
    return PyType_Ready(type) < 0 || PyModule_AddObjectRef(m, name, (PyObject *)type) < 0 ? -1 : 0;
}

static int module_exec(PyObject *m) {
    if (add_type(m, "Histogram", &kgpy_HistType) < 0 || add_type(m, "Writer", &kgpy_WriterType) < 0 ||
        add_type(m, "Reader", &kgpy_ReaderType) < 0 || add_type(m, "V1Reader", &kgpy_V1ReaderType) < 0)
        return -1;
    if (kgpy_event_type_ready() < 0 || PyModule_AddObjectRef(m, "Event", (PyObject *)kgpy_EventType) < 0) return -1;
    if (!kgpy_Error) {
        kgpy_Error = PyErr_NewExceptionWithDoc("kindlyguard_monitor._ring.Error",
                                               "A ring call failed: args are (status, detail).", PyExc_OSError, NULL);
        if (!kgpy_Error) return -1;
    }
    if (PyModule_AddObjectRef(m, "Error", kgpy_Error) < 0) return -1;
#define KGPY_ADD_STATUS(name, value) \
    if (PyModule_AddIntConstant(m, "STATUS_" #name, KG_##name) < 0) return -1;
    KG_STATUS_LIST(KGPY_ADD_STATUS)
#undef KGPY_ADD_STATUS
    if (PyModule_AddIntConstant(m, "CRC_HARDWARE", kg_crc32c_is_hardware()) < 0 ||
        PyModule_AddIntConstant(m, "SHARED_FUTEX", KG_HAVE_SHARED_FUTEX) < 0 ||
        PyModule_AddIntConstant(m, "HIST_BUCKETS", KG_HIST_BUCKETS) < 0 ||
        PyModule_AddIntConstant(m, "V1_HEADER_SIZE", KG_V1_HEADER_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "V1_EVENT_SIZE", KG_V1_EVENT_SIZE) < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot module_slots[] = {{Py_mod_exec, module_exec}, {0, NULL}};

static struct PyModuleDef ring_module = {
    PyModuleDef_HEAD_INIT, .m_name = "kindlyguard_monitor._ring", .m_doc = "KindlyGuard ring v2 in C (native/).",
    .m_size = 0, .m_methods = module_methods, .m_slots = module_slots};

PyMODINIT_FUNC PyInit__ring(void) { return PyModuleDef_Init(&ring_module); }
