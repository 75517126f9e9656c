/* kg_status.h - every result the ring library can give, as one enum.
 * The binding exports each as a module constant (_ring.STATUS_<NAME>), and
 * tests/integration/test_native.py checks kindlyguard_monitor/ring/errors.py's Status
 * against them: the Python layer maps each to a sentence a user can act on. */
#ifndef KG_STATUS_H
#define KG_STATUS_H

/* X(name, value): the one list. */
#define KG_STATUS_LIST(X)                                                      \
    X(OK, 0)                                                                   \
    X(TIMEOUT, 1)      /* nothing arrived in time (not an error) */            \
    X(NOT_FOUND, 2)    /* no ring file at the path: no Shield running */       \
    X(NOT_REGULAR, 3)  /* a symlink, directory, device... */                   \
    X(WRONG_OWNER, 4)  /* file owned by another user */                        \
    X(UNSAFE_MODE, 5)  /* group/other permission bits on the file */           \
    X(UNSAFE_DIR, 6)   /* directory group/other writable, or not ours */       \
    X(BAD_MAGIC, 7)    /* not a KindlyGuard ring */                            \
    X(BAD_VERSION, 8)  /* a KGMS ring of another version */                    \
    X(BAD_HEADER, 9)   /* header CRC or header fields wrong */                 \
    X(BAD_SIZE, 10)    /* file size does not match the header, or truncated */ \
    X(STALE, 11)       /* heartbeat older than 3 s: writer gone or stuck */    \
    X(CLOSED, 12)      /* writer closed the ring cleanly */                    \
    X(REPLACED, 13)    /* another file now sits at the path */                 \
    X(LOCKED, 14)      /* another writer holds the lock */                     \
    X(IO, 15)          /* an OS call failed; the message says which */         \
    X(INVALID, 16)     /* invalid argument (caller error) */                   \
    X(TRUNCATED, 17)   /* the file shrank while mapped: the ring is gone (kg_fault.h) */

typedef enum kg_status {
#define KG_STATUS_ENUM(name, value) KG_##name = value,
    KG_STATUS_LIST(KG_STATUS_ENUM)
#undef KG_STATUS_ENUM
} kg_status;

#endif
