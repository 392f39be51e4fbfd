// What the Platform module needs from glibc that Swift cannot call as it stands.
#ifndef CPLATFORM_SHIM_H
#define CPLATFORM_SHIM_H

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
/* The fleet's one event loop: epoll over its cars' sockets, an eventfd for the airbag line. */
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>

/// Gives the heap's free memory back to the system (glibc's malloc_trim), after a burst.
static inline int cpl_malloc_trim(void) { return malloc_trim(0); }

/// Caps glibc's malloc arenas (M_ARENA_MAX); 1 on success.
static inline int cpl_malloc_arena_max(int n) { return mallopt(M_ARENA_MAX, n); }

/// Names the calling thread (at most 15 bytes; ps -L, top -H). pthread_setname_np is a GNU
/// extension that the Glibc module does not show without _GNU_SOURCE.
extern int pthread_setname_np(pthread_t thread, const char *name);
static inline int cpl_name_this_thread(const char *name) { return pthread_setname_np(pthread_self(), name); }

/// The write end of the pipe the process's signals go to (ProcessSignals); one per process.
static volatile int cpl_signal_pipe = -1;

/// The handler for every routed signal: it writes the signal's number to the pipe and nothing
/// else (write is async-signal-safe; errno is kept for the code it interrupted). A full pipe
/// drops the byte: the reader already has that many signals to handle.
static void cpl_signal_to_pipe(int signo) {
    int saved = errno;
    unsigned char number = (unsigned char)signo;
    ssize_t written = write(cpl_signal_pipe, &number, 1);
    (void)written;
    errno = saved;
}

/// Sends `signo` to the pipe whose (non-blocking) write end is `fd`; sigaction's result.
static inline int cpl_route_signal_to_pipe(int signo, int fd) {
    cpl_signal_pipe = fd;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = cpl_signal_to_pipe;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    return sigaction(signo, &action, NULL);
}

#endif
