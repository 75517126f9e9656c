/* py_poller.c - _ring.Event, and the poll Reader (v2) and V1Reader (v1) share:
 * read a batch in C with the GIL released, and only when it was empty wait
 * (the reader type's own wait: futex or adaptive polling) and read again;
 * then build one list of Event objects for the batch. */
#include "kgpy.h"

PyTypeObject *kgpy_EventType;

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

int kgpy_event_type_ready(void) {
    if (!kgpy_EventType) kgpy_EventType = PyStructSequence_NewType(&event_desc);
    return kgpy_EventType ? 0 : -1;
}

static PyObject *source_str(kgpy_source_cache *cache, const char *p, uint16_t len) {
    uint32_t hsh = 2166136261u;
    for (uint16_t i = 0; i < len; i++) hsh = (hsh ^ (uint8_t)p[i]) * 16777619u;
    unsigned slot = hsh % KGPY_SOURCE_CACHE;
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

static void source_cache_clear(kgpy_source_cache *cache) {
    for (int i = 0; i < KGPY_SOURCE_CACHE; i++) Py_CLEAR(cache->slot[i].str);
}

/* One list of Event objects for a batch read in C (v2 or v1), and its
 * publish -> Python-objects delivery latency (history replayed at open is none). */
static PyObject *events_list(const kg_batch *b, kgpy_source_cache *cache, HistObject *delivery, uint64_t opened_mono_ns) {
    PyObject *list = PyList_New((Py_ssize_t)b->count);
    if (!list) return NULL;
    /* Events of one batch share their publish stamp (one writer batch), their
     * observe stamp (one read) and often their timestamp: build each int once. */
    PyObject *shared[3] = {NULL, NULL, NULL};
    uint64_t shared_v[3] = {0, 0, 0};
    for (size_t i = 0; i < b->count; i++) {
        const kg_event *e = &b->events[i];
        const char *txt = (const char *)b->text + e->text_offset;
        PyObject *ev = PyStructSequence_New(kgpy_EventType);
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

int kgpy_parse_start(const char *start) {
    if (strcmp(start, "oldest") == 0) return KG_START_OLDEST;
    if (strcmp(start, "newest") == 0) return KG_START_NEWEST;
    PyErr_SetString(PyExc_ValueError, "start is 'oldest' or 'newest'");
    return -1;
}

int kgpy_parse_batch(Py_ssize_t batch) {
    if (batch >= 1 && batch <= 1 << 20) return 0;
    PyErr_SetString(PyExc_ValueError, "batch is 1..1048576");
    return -1;
}

int kgpy_poller_reopen(kgpy_poller *p) {
    if (p->in_poll) {
        PyErr_SetString(PyExc_RuntimeError, "poll() is running in another thread: stop() it first");
        return -1;
    }
    if (!p->transport) p->transport = kgpy_hist_new();
    if (!p->delivery) p->delivery = kgpy_hist_new();
    return p->transport && p->delivery ? 0 : -1;
}

int kgpy_poller_opened(kgpy_poller *p, size_t batch, size_t text_per_event, uint64_t opened_mono_ns) {
    p->open = 1;
    p->left_c_ns = p->max_stall_ns = 0;
    p->stop = 0;
    p->wait_state.stop = &p->stop;
    p->opened_mono_ns = opened_mono_ns;
    PyMem_Free(p->events);
    PyMem_Free(p->text);
    p->events = PyMem_Malloc(batch * sizeof(kg_event));
    p->text = PyMem_Malloc(batch * text_per_event);
    p->capacity = p->events && p->text ? batch : 0;
    p->text_capacity = p->events && p->text ? batch * text_per_event : 0;
    if (!p->capacity) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

void kgpy_poller_closed(kgpy_poller *p) {
    p->open = 0;
    source_cache_clear(&p->sources);
}

void kgpy_poller_dealloc(kgpy_poller *p) {
    source_cache_clear(&p->sources);
    PyMem_Free(p->events);
    PyMem_Free(p->text);
    p->events = NULL;
    p->text = NULL;
    Py_CLEAR(p->transport);
    Py_CLEAR(p->delivery);
}

int kgpy_poller_check(kgpy_poller *p, const char *what) {
    if (!p->open) {
        PyErr_SetString(PyExc_ValueError, "the reader is closed");
        return -1;
    }
    if (what && p->in_poll) {
        PyErr_Format(PyExc_RuntimeError, "%s while poll() runs in another thread", what);
        return -1;
    }
    return 0;
}

/* poll(timeout=0.1, max_events=0) -> [Event, ...]; [] when nothing came in
 * time, the ring closed, or stop() was called. max_events > 0 caps the batch
 * below the reader's size. A ring truncated under the reader: the events read
 * before the fault are handed out (the rest are counted missed), and the next
 * poll, which reads nothing more, raises. */
PyObject *kgpy_poller_poll(kgpy_poller *p, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"timeout", "max_events", NULL};
    double timeout = 0.1;
    Py_ssize_t max_events = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|dn", kwlist, &timeout, &max_events)) return NULL;
    if (kgpy_poller_check(p, NULL) < 0) return NULL;
    if (p->in_poll) return PyErr_Format(PyExc_RuntimeError, "poll() is already running in another thread");
    uint64_t timeout_ns = timeout <= 0 ? 0 : (uint64_t)(timeout * 1e9);
    kg_batch b = {.events = p->events, .capacity = p->capacity, .text = p->text, .text_capacity = p->text_capacity};
    if (max_events > 0 && (size_t)max_events < b.capacity) b.capacity = (size_t)max_events;
    p->in_poll = 1;
    kg_status st;
    Py_BEGIN_ALLOW_THREADS;
    uint64_t entered = kg_mono_ns();
    if (p->left_c_ns && entered - p->left_c_ns > p->max_stall_ns) p->max_stall_ns = entered - p->left_c_ns;
    st = p->read(p->owner, &b);
    if (st == KG_OK && b.count == 0 && timeout_ns && !p->stop) {
        /* wait only when a read found nothing: under load we never wait */
        st = p->wait(p->owner, timeout_ns);
        if (st == KG_OK) st = p->read(p->owner, &b);
    }
    p->left_c_ns = kg_mono_ns();
    Py_END_ALLOW_THREADS;
    p->in_poll = 0;
    if (st == KG_TRUNCATED && b.count == 0) return kgpy_raise(st, KGPY_SHRANK);
    return events_list(&b, &p->sources, p->delivery, p->opened_mono_ns);
}

/* stop(): make a poll() in another thread return promptly (thread-safe, needs
 * no lock: a flag the wait looks at, then the reader type's wake-up, if any). */
PyObject *kgpy_poller_stop(kgpy_poller *p) {
    p->stop = 1;
    if (p->wake && p->open) p->wake(p->owner);
    Py_RETURN_NONE;
}

PyObject *kgpy_poller_resume(kgpy_poller *p) {
    p->stop = 0;
    Py_RETURN_NONE;
}

PyObject *kgpy_poller_hist(kgpy_poller *p, int delivery) {
    HistObject *h = delivery ? p->delivery : p->transport;
    if (!h) {
        PyErr_SetString(PyExc_ValueError, "the reader was never opened");
        return NULL;
    }
    return Py_NewRef((PyObject *)h);
}

PyObject *kgpy_poller_wait_stats(kgpy_poller *p) {
    return Py_BuildValue("(KK)", (unsigned long long)p->wait_state.spins_won, (unsigned long long)p->wait_state.sleeps);
}

/* max_stall_ns, and (reset) start over: the next stall is timed from the next poll. */
PyObject *kgpy_poller_max_stall(kgpy_poller *p, int reset) {
    PyObject *out = PyLong_FromUnsignedLongLong(p->max_stall_ns);
    if (reset) p->left_c_ns = p->max_stall_ns = 0;
    return out;
}

/* A tuple subclass instance (a NamedTuple: no __dict__) holding `n` new references from `items`,
 * built as tuple.__new__(type, items) builds it, then untracked (see threat_events). */
static PyObject *untracked_record(PyTypeObject *type, PyObject **items, Py_ssize_t n) {
    PyObject *rec = type->tp_alloc(type, n);
    if (!rec) {
        for (Py_ssize_t k = 0; k < n; k++) Py_DECREF(items[k]);
        return NULL;
    }
    for (Py_ssize_t k = 0; k < n; k++) PyTuple_SET_ITEM(rec, k, items[k]);
    PyObject_GC_UnTrack(rec);
    return rec;
}

/* Is `key` a key_type record of atoms only (None, ints, bytes), so that untracking it is safe? */
static int atomic_key(PyObject *key, PyTypeObject *key_type) {
    if (Py_TYPE(key) != key_type) return 0;
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(key); k++) {
        PyObject *item = PyTuple_GET_ITEM(key, k);
        if (item != Py_None && !PyLong_CheckExact(item) && !PyBytes_CheckExact(item)) return 0;
    }
    return 1;
}

/* threat_events(events, generation, transport, tail, event_type, key_type, keys=None) -> list
 * event.from_ring()'s conversion of one batch: for each Event e,
 * event_type((key, transport, generation) + e + tail), where key is key_type((generation, e.seq,
 * None)) for a writer generation that numbers its events, or keys[i] (made in Python: the Shield's
 * v1 ring, keyed by content; each a key_type of None, ints and bytes only).
 * Both records hold only ints, strs, bytes, bools, None and `transport` (an enum member, which
 * holds no event): neither can ever be part of a reference cycle, so both are untracked, as the
 * Events are.
 * Tracked, a flood's events were most of what every young collection walked: 20,000 at a time,
 * 5-30 ms on the thread that happened to allocate, most often the reader's (docs/benchmarks.md). */
PyObject *kgpy_threat_events(PyObject *m, PyObject *args) {
    PyObject *events, *generation, *transport, *tail, *keys = Py_None;
    PyTypeObject *event_type, *key_type;
    if (!PyArg_ParseTuple(args, "O!OOO!O!O!|O", &PyList_Type, &events, &generation, &transport, &PyTuple_Type, &tail,
                          &PyType_Type, &event_type, &PyType_Type, &key_type, &keys))
        return NULL;
    if (keys != Py_None && (!PyList_Check(keys) || PyList_GET_SIZE(keys) != PyList_GET_SIZE(events))) {
        PyErr_SetString(PyExc_TypeError, "keys is None or a list, one key per event");
        return NULL;
    }
    const Py_ssize_t ntail = PyTuple_GET_SIZE(tail), width = 3 + 10 + ntail;
    if (!PyType_IsSubtype(event_type, &PyTuple_Type) || !PyType_IsSubtype(key_type, &PyTuple_Type) ||
        event_type->tp_dictoffset || key_type->tp_dictoffset || width > 32) {
        PyErr_SetString(PyExc_TypeError, "event_type and key_type are tuple subclasses without a __dict__");
        return NULL;
    }
    const Py_ssize_t n = PyList_GET_SIZE(events);
    PyObject *out = PyList_New(n);
    if (!out) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = PyList_GET_ITEM(events, i);
        if (Py_TYPE(e) != kgpy_EventType) {
            PyErr_SetString(PyExc_TypeError, "events are the ring reader's Events");
            goto fail;
        }
        PyObject *key;
        if (keys == Py_None) {
            PyObject *key_items[3] = {Py_NewRef(generation), Py_NewRef(PyStructSequence_GET_ITEM(e, 0)),
                                      Py_NewRef(Py_None)};
            key = untracked_record(key_type, key_items, 3);
            if (!key) goto fail;
        } else {
            key = PyList_GET_ITEM(keys, i);
            if (!atomic_key(key, key_type)) {
                PyErr_SetString(PyExc_TypeError, "a key is a key_type of None, ints and bytes only");
                goto fail;
            }
            PyObject_GC_UnTrack(key);
            Py_INCREF(key);
        }
        PyObject *items[32];
        items[0] = key;
        items[1] = Py_NewRef(transport);
        items[2] = Py_NewRef(generation);
        for (Py_ssize_t k = 0; k < 10; k++) items[3 + k] = Py_NewRef(PyStructSequence_GET_ITEM(e, k));
        for (Py_ssize_t k = 0; k < ntail; k++) items[13 + k] = Py_NewRef(PyTuple_GET_ITEM(tail, k));
        PyObject *ev = untracked_record(event_type, items, width);
        if (!ev) goto fail;
        PyList_SET_ITEM(out, i, ev);
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}
