/* kg_platform_win32.c - kg_platform.h for Windows.
 *
 * Files: CreateFileW + CreateFileMappingW/MapViewOfFile on a real file in
 * %LOCALAPPDATA%\KindlyGuard\shm (the spec's path), so readers find it by
 * path like on POSIX. Lock: LockFileEx on the .lock file, released by the
 * kernel when the writer dies. Identity: volume serial + file index.
 * Wait: no cross-process futex (WaitOnAddress is process-private), so
 * kg_futex_wait only naps and kg_wait.c backs off (KG_HAVE_SHARED_FUTEX 0).
 * Ownership and mode checks: Windows has no mode bits; the directory under
 * the user's %LOCALAPPDATA% is private by its inherited ACL, so the owner and
 * permission checks are the file's owner SID against ours (TODO: compare the
 * SIDs; today a file at the path is accepted if it is a regular file).
 * Paths are UTF-8 and converted to UTF-16 for the W APIs.
 * A restarted writer renames a ring that readers still map aside before
 * putting the new one in place (Windows refuses to replace a mapped file).
 * Run by tests/integration/test_c_library.py: native/selftest.c cross-compiled with
 * mingw-w64, under Wine (not yet on a real Windows).
 */
#if defined(_WIN32)

#include <stdio.h>
#include <string.h>
#include <windows.h>

#include "kg_platform.h"

#define FAIL(status, ...)                                      \
    do {                                                       \
        if (err && errlen) snprintf(err, errlen, __VA_ARGS__); \
        return (status);                                       \
    } while (0)

static int widen(const char *utf8, wchar_t *out, int cap) {
    return MultiByteToWideChar(CP_UTF8, 0, utf8, -1, out, cap) > 0;
}

uint64_t kg_mono_ns(void) {
    static LARGE_INTEGER freq;
    LARGE_INTEGER now;
    if (!freq.QuadPart) QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&now);
    uint64_t t = (uint64_t)now.QuadPart, f = (uint64_t)freq.QuadPart; /* integers: a double loses ns after days */
    return t / f * 1000000000ull + t % f * 1000000000ull / f;
}

uint64_t kg_unix_ns(void) {
    FILETIME ft;
    GetSystemTimePreciseAsFileTime(&ft);
    uint64_t t = ((uint64_t)ft.dwHighDateTime << 32) | ft.dwLowDateTime; /* 100 ns since 1601 */
    return (t - 116444736000000000ull) * 100ull;
}

void kg_sleep_ns(uint64_t ns) {
    DWORD ms = (DWORD)(ns / 1000000ull);
    Sleep(ms ? ms : 1); /* Windows sleeps in ms at best */
}

void kg_yield(void) { SwitchToThread(); }

uint32_t kg_getpid(void) { return (uint32_t)GetCurrentProcessId(); }

uint64_t kg_thread_cpu_ns(void) {
    FILETIME c, e, k, u;
    GetThreadTimes(GetCurrentThread(), &c, &e, &k, &u);
    uint64_t kt = ((uint64_t)k.dwHighDateTime << 32) | k.dwLowDateTime;
    uint64_t ut = ((uint64_t)u.dwHighDateTime << 32) | u.dwLowDateTime;
    return (kt + ut) * 100ull;
}

void kg_futex_wait(uint32_t *word, uint32_t expected, uint64_t timeout_ns) {
    (void)word;
    (void)expected;
    kg_sleep_ns(timeout_ns < 1000000ull ? timeout_ns : 1000000ull);
}

void kg_futex_wake_all(uint32_t *word) { (void)word; }

static void dir_of(const char *path, char *dir, size_t len) {
    snprintf(dir, len, "%s", path);
    char *a = strrchr(dir, '\\'), *b = strrchr(dir, '/');
    char *slash = a > b ? a : b;
    if (slash) *slash = 0;
    else snprintf(dir, len, ".");
}

kg_status kg_dir_prepare(const char *path, char *err, size_t errlen) {
    char dir[MAX_PATH * 3];
    wchar_t wdir[MAX_PATH];
    dir_of(path, dir, sizeof dir);
    if (!widen(dir, wdir, MAX_PATH)) FAIL(KG_INVALID, "bad path %s", dir);
    if (!CreateDirectoryW(wdir, NULL) && GetLastError() != ERROR_ALREADY_EXISTS)
        FAIL(KG_IO, "cannot create directory %s (error %lu)", dir, GetLastError());
    DWORD attrs = GetFileAttributesW(wdir);
    if (attrs == INVALID_FILE_ATTRIBUTES || !(attrs & FILE_ATTRIBUTE_DIRECTORY))
        FAIL(KG_UNSAFE_DIR, "%s is not a directory", dir);
    if (attrs & FILE_ATTRIBUTE_REPARSE_POINT) FAIL(KG_UNSAFE_DIR, "%s is a link", dir);
    return KG_OK;
}

kg_status kg_lock_acquire(const char *lock_path, intptr_t *lock_handle, char *err, size_t errlen) {
    wchar_t w[MAX_PATH];
    if (!widen(lock_path, w, MAX_PATH)) FAIL(KG_INVALID, "bad path %s", lock_path);
    HANDLE h = CreateFileW(w, GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                           NULL, OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    if (h == INVALID_HANDLE_VALUE) FAIL(KG_IO, "cannot open lock %s (error %lu)", lock_path, GetLastError());
    OVERLAPPED ov = {0};
    if (!LockFileEx(h, LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ov)) {
        CloseHandle(h);
        FAIL(KG_LOCKED, "lock %s is held by a running writer", lock_path);
    }
    *lock_handle = (intptr_t)h;
    return KG_OK;
}

void kg_lock_release(intptr_t lock_handle) {
    if (lock_handle != -1 && lock_handle != 0) CloseHandle((HANDLE)lock_handle);
}

static kg_status map_handle(HANDLE file, size_t length, int writable, kg_mapping *m, char *err, size_t errlen) {
    HANDLE mapping = CreateFileMappingW(file, NULL, writable ? PAGE_READWRITE : PAGE_READONLY,
                                        (DWORD)((uint64_t)length >> 32), (DWORD)length, NULL);
    if (!mapping) FAIL(KG_IO, "CreateFileMapping failed (error %lu)", GetLastError());
    void *base = MapViewOfFile(mapping, writable ? FILE_MAP_WRITE : FILE_MAP_READ, 0, 0, length);
    if (!base) {
        DWORD e = GetLastError();
        CloseHandle(mapping);
        FAIL(KG_IO, "MapViewOfFile failed (error %lu)", e);
    }
    BY_HANDLE_FILE_INFORMATION info;
    GetFileInformationByHandle(file, &info);
    m->base = base;
    m->length = length;
    m->id.dev = info.dwVolumeSerialNumber;
    m->id.ino = ((uint64_t)info.nFileIndexHigh << 32) | info.nFileIndexLow;
    m->handle = (intptr_t)mapping;
    return KG_OK;
}

kg_status kg_map_create(const char *tmp_path, size_t length, kg_mapping *m, char *err, size_t errlen) {
    wchar_t w[MAX_PATH];
    if (!widen(tmp_path, w, MAX_PATH)) FAIL(KG_INVALID, "bad path %s", tmp_path);
    HANDLE f = CreateFileW(w, GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                           NULL, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    if (f == INVALID_HANDLE_VALUE) FAIL(KG_IO, "cannot create %s (error %lu)", tmp_path, GetLastError());
    kg_status st = map_handle(f, length, 1, m, err, errlen);
    CloseHandle(f); /* the mapping keeps the file */
    return st;
}

/* Delete "<path>.*.old" files a previous writer renamed aside (those still
 * mapped by a reader stay; the next writer tries again). */
static void sweep_asides(const wchar_t *wpath) {
    wchar_t pattern[MAX_PATH], dir[MAX_PATH], full[MAX_PATH];
    WIN32_FIND_DATAW found;
    if (_snwprintf(pattern, MAX_PATH, L"%ls.*.old", wpath) < 0) return;
    wcsncpy(dir, wpath, MAX_PATH - 1);
    dir[MAX_PATH - 1] = 0;
    wchar_t *a = wcsrchr(dir, L'\\'), *b = wcsrchr(dir, L'/');
    wchar_t *slash = a > b ? a : b;
    if (slash) slash[1] = 0;
    else dir[0] = 0;
    HANDLE h = FindFirstFileW(pattern, &found);
    if (h == INVALID_HANDLE_VALUE) return;
    do {
        if (_snwprintf(full, MAX_PATH, L"%ls%ls", dir, found.cFileName) >= 0) DeleteFileW(full);
    } while (FindNextFileW(h, &found));
    FindClose(h);
}

/* Windows will not replace a file that a reader still maps (ERROR_ACCESS_DENIED:
 * a restarted writer while the app is attached). Readers open it with
 * FILE_SHARE_DELETE, so the old file can be renamed aside first: it lives on
 * under "<final>.<pid>.old" while mapped, readers see the path replaced, and
 * each writer's start sweeps the asides that nobody maps any more. */
kg_status kg_publish_file(const char *tmp_path, const char *final_path, char *err, size_t errlen) {
    wchar_t a[MAX_PATH], b[MAX_PATH], aside[MAX_PATH];
    if (!widen(tmp_path, a, MAX_PATH) || !widen(final_path, b, MAX_PATH)) FAIL(KG_INVALID, "bad path");
    sweep_asides(b);
    if (MoveFileExW(a, b, MOVEFILE_REPLACE_EXISTING)) return KG_OK;
    DWORD e = GetLastError();
    if (e == ERROR_ACCESS_DENIED || e == ERROR_SHARING_VIOLATION || e == ERROR_USER_MAPPED_FILE) {
        if (_snwprintf(aside, MAX_PATH, L"%ls.%lu.old", b, GetCurrentProcessId()) < 0) FAIL(KG_INVALID, "path too long");
        if (MoveFileExW(b, aside, MOVEFILE_REPLACE_EXISTING)) {
            if (MoveFileExW(a, b, 0)) {
                DeleteFileW(aside); /* fails while a reader maps it: swept later */
                return KG_OK;
            }
            e = GetLastError();
            MoveFileExW(aside, b, 0); /* put the old one back */
        } else {
            e = GetLastError();
        }
    }
    FAIL(KG_IO, "cannot rename %s to %s (error %lu)", tmp_path, final_path, e);
}

void kg_remove_file(const char *path) {
    wchar_t w[MAX_PATH];
    if (widen(path, w, MAX_PATH)) DeleteFileW(w);
}

/* Opens an existing regular file (not a link, not a directory) of at least min_len
 * bytes for mapping: both map-open calls start here. */
static kg_status open_existing(const char *path, DWORD access, size_t min_len, HANDLE *out, uint64_t *file_size,
                               char *err, size_t errlen) {
    wchar_t w[MAX_PATH];
    if (!widen(path, w, MAX_PATH)) FAIL(KG_INVALID, "bad path %s", path);
    DWORD attrs = GetFileAttributesW(w);
    if (attrs == INVALID_FILE_ATTRIBUTES) FAIL(KG_NOT_FOUND, "%s does not exist", path);
    if (attrs & FILE_ATTRIBUTE_REPARSE_POINT) FAIL(KG_NOT_REGULAR, "it is a link");
    if (attrs & FILE_ATTRIBUTE_DIRECTORY) FAIL(KG_NOT_REGULAR, "it is a directory");
    HANDLE f = CreateFileW(w, access, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL, OPEN_EXISTING,
                           FILE_FLAG_OPEN_REPARSE_POINT, NULL);
    if (f == INVALID_HANDLE_VALUE) FAIL(KG_IO, "cannot open %s (error %lu)", path, GetLastError());
    LARGE_INTEGER size;
    GetFileSizeEx(f, &size);
    if ((uint64_t)size.QuadPart < min_len) {
        CloseHandle(f);
        FAIL(KG_BAD_SIZE, "file is %llu bytes, shorter than the header", (unsigned long long)size.QuadPart);
    }
    *out = f;
    *file_size = (uint64_t)size.QuadPart;
    return KG_OK;
}

kg_status kg_map_open_checked(const char *path, size_t header_len, uint64_t *file_size, kg_mapping *m,
                              char *err, size_t errlen) {
    HANDLE f;
    kg_status st = open_existing(path, GENERIC_READ | GENERIC_WRITE, header_len, &f, file_size, err, errlen);
    if (st != KG_OK) return st;
    /* The header view and the whole view share one read-write mapping object. */
    st = map_handle(f, (size_t)*file_size, 1, m, err, errlen);
    CloseHandle(f);
    if (st == KG_OK) {
        UnmapViewOfFile(m->base);
        m->base = MapViewOfFile((HANDLE)m->handle, FILE_MAP_WRITE, 0, 0, header_len);
        m->length = header_len;
        if (!m->base) FAIL(KG_IO, "MapViewOfFile failed (error %lu)", GetLastError());
    }
    return st;
}

kg_status kg_map_open_readonly(const char *path, size_t min_len, uint64_t *file_size, kg_mapping *m,
                               char *err, size_t errlen) {
    HANDLE f;
    kg_status st = open_existing(path, GENERIC_READ, min_len, &f, file_size, err, errlen);
    if (st != KG_OK) return st;
    st = map_handle(f, (size_t)*file_size, 0, m, err, errlen);
    CloseHandle(f);
    return st;
}

kg_status kg_map_whole_readonly(kg_mapping *header, size_t length, kg_mapping *whole, char *err, size_t errlen) {
    void *base = MapViewOfFile((HANDLE)header->handle, FILE_MAP_READ, 0, 0, length);
    if (!base) FAIL(KG_IO, "MapViewOfFile failed (error %lu)", GetLastError());
    whole->base = base;
    whole->length = length;
    whole->id = header->id;
    whole->handle = -1;
    return KG_OK;
}

void kg_unmap(kg_mapping *m) {
    if (m->base) UnmapViewOfFile(m->base);
    if (m->handle != -1 && m->handle != 0) CloseHandle((HANDLE)m->handle);
    m->base = NULL;
    m->handle = -1;
}

kg_status kg_path_identity(const char *path, kg_file_id *id) {
    wchar_t w[MAX_PATH];
    if (!widen(path, w, MAX_PATH)) return KG_INVALID;
    HANDLE f = CreateFileW(w, 0, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL, OPEN_EXISTING,
                           FILE_FLAG_OPEN_REPARSE_POINT, NULL);
    if (f == INVALID_HANDLE_VALUE) return GetLastError() == ERROR_FILE_NOT_FOUND ? KG_NOT_FOUND : KG_IO;
    BY_HANDLE_FILE_INFORMATION info;
    BOOL ok = GetFileInformationByHandle(f, &info);
    CloseHandle(f);
    if (!ok) return KG_IO;
    id->dev = info.dwVolumeSerialNumber;
    id->ino = ((uint64_t)info.nFileIndexHigh << 32) | info.nFileIndexLow;
    return KG_OK;
}

#endif
