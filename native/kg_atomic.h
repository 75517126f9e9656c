/* kg_atomic.h - the only place the ring's atomics are spelled.
 *
 * Every shared field is a naturally aligned 4- or 8-byte word in a mapped file,
 * so the accesses must be real CPU atomics (lock-free, address-free), not
 * compiler-only barriers: arm64 (Apple silicon) tears what x86 forgives.
 * GCC and Clang (Linux, macOS, MinGW) use the __atomic builtins; MSVC uses its
 * interlocked intrinsics with full fences. Anything else is a compile error,
 * never a silent fallback.
 */
#ifndef KG_ATOMIC_H
#define KG_ATOMIC_H

#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)

_Static_assert(__atomic_always_lock_free(8, 0), "8-byte atomics must be lock-free for a shared mapping");

static inline uint64_t kg_load_acquire64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint64_t kg_load_relaxed64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline uint64_t kg_load_seqcst64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void kg_store_relaxed64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void kg_store_release64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void kg_store_seqcst64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline void kg_add_relaxed64(uint64_t *p, uint64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline uint32_t kg_load_acquire32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint32_t kg_load_seqcst32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void kg_store_release32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint32_t kg_fetch_add_seqcst32(uint32_t *p, uint32_t v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t kg_fetch_sub_seqcst32(uint32_t *p, uint32_t v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }
static inline void kg_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
static inline void kg_fence_release(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
static inline void kg_fence_seqcst(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_ARM64))
#include <windows.h>
/* MSVC: volatile 8-byte loads/stores are single accesses on x64/arm64; the
 * fences around them give acquire/release (a full barrier is stronger than
 * needed, never weaker). */
static inline uint64_t kg_load_acquire64(const uint64_t *p) { uint64_t v = *(const volatile uint64_t *)p; MemoryBarrier(); return v; }
static inline uint64_t kg_load_relaxed64(const uint64_t *p) { return *(const volatile uint64_t *)p; }
static inline uint64_t kg_load_seqcst64(const uint64_t *p) { MemoryBarrier(); uint64_t v = *(const volatile uint64_t *)p; MemoryBarrier(); return v; }
static inline void kg_store_relaxed64(uint64_t *p, uint64_t v) { *(volatile uint64_t *)p = v; }
static inline void kg_store_release64(uint64_t *p, uint64_t v) { MemoryBarrier(); *(volatile uint64_t *)p = v; }
static inline void kg_store_seqcst64(uint64_t *p, uint64_t v) { InterlockedExchange64((volatile LONG64 *)p, (LONG64)v); }
static inline void kg_add_relaxed64(uint64_t *p, uint64_t v) { InterlockedExchangeAdd64((volatile LONG64 *)p, (LONG64)v); }
static inline uint32_t kg_load_acquire32(const uint32_t *p) { uint32_t v = *(const volatile uint32_t *)p; MemoryBarrier(); return v; }
static inline uint32_t kg_load_seqcst32(const uint32_t *p) { MemoryBarrier(); uint32_t v = *(const volatile uint32_t *)p; MemoryBarrier(); return v; }
static inline void kg_store_release32(uint32_t *p, uint32_t v) { MemoryBarrier(); *(volatile uint32_t *)p = v; }
static inline uint32_t kg_fetch_add_seqcst32(uint32_t *p, uint32_t v) { return (uint32_t)InterlockedExchangeAdd((volatile LONG *)p, (LONG)v); }
static inline uint32_t kg_fetch_sub_seqcst32(uint32_t *p, uint32_t v) { return (uint32_t)InterlockedExchangeAdd((volatile LONG *)p, -(LONG)v); }
static inline void kg_fence_acquire(void) { MemoryBarrier(); }
static inline void kg_fence_release(void) { MemoryBarrier(); }
static inline void kg_fence_seqcst(void) { MemoryBarrier(); }

#else
#error "kg_atomic.h: no atomics for this compiler; add them here (C11 <stdatomic.h> on plain uint64_t is not portable)"
#endif

#endif
