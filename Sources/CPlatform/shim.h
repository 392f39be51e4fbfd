// What the Platform module needs from glibc that Swift cannot call as it stands.
#ifndef CPLATFORM_SHIM_H
#define CPLATFORM_SHIM_H

#include <malloc.h>
#include <pthread.h>

/// Gives the heap's free memory back to the system (glibc's malloc_trim), after a burst.
static inline int cpl_malloc_trim(void) { return malloc_trim(0); }

/// Caps glibc's malloc arenas (M_ARENA_MAX); 1 on success.
static inline int cpl_malloc_arena_max(int n) { return mallopt(M_ARENA_MAX, n); }

/// Names the calling thread (at most 15 bytes; ps -L, top -H). pthread_setname_np is a GNU
/// extension that the Glibc module does not show without _GNU_SOURCE.
extern int pthread_setname_np(pthread_t thread, const char *name);
static inline int cpl_name_this_thread(const char *name) { return pthread_setname_np(pthread_self(), name); }

#endif
