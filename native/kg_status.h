/* kg_status.h - every result the ring library can give, as one enum.
 * The Python layer maps each to a sentence a user can act on
 * (kindlyguard_monitor/ring/errors.py); keep the two lists in the same order. */
#ifndef KG_STATUS_H
#define KG_STATUS_H

typedef enum kg_status {
    KG_OK = 0,
    KG_TIMEOUT = 1,        /* nothing arrived in time (not an error) */
    KG_NOT_FOUND = 2,      /* no ring file at the path: no Shield running */
    KG_NOT_REGULAR = 3,    /* a symlink, directory, device... */
    KG_WRONG_OWNER = 4,    /* file owned by another user */
    KG_UNSAFE_MODE = 5,    /* group/other permission bits on the file */
    KG_UNSAFE_DIR = 6,     /* directory group/other writable, or not ours */
    KG_BAD_MAGIC = 7,      /* not a KindlyGuard ring */
    KG_BAD_VERSION = 8,    /* a KGMS ring of another version (v1) */
    KG_BAD_HEADER = 9,     /* header CRC or header fields wrong */
    KG_BAD_SIZE = 10,      /* file size does not match the header, or truncated */
    KG_STALE = 11,         /* heartbeat older than 3 s: writer gone or stuck */
    KG_CLOSED = 12,        /* writer closed the ring cleanly */
    KG_REPLACED = 13,      /* another file now sits at the path */
    KG_LOCKED = 14,        /* another writer holds the lock */
    KG_IO = 15,            /* an OS call failed; the message says which */
    KG_INVALID = 16,       /* invalid argument (caller error) */
    KG_TRUNCATED = 17,     /* the file shrank while mapped: the ring is gone (kg_fault.h) */
    KG_STATUS_COUNT_ = 18
} kg_status;

#endif
