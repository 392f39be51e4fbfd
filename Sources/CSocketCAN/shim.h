// The parts of <linux/can*.h> and libsocketcan that Swift needs, and static inline helpers
// for what Swift cannot express (cast macros, sizeof, CMSG_* walking, variadic ioctl).
#ifndef CSOCKETCAN_SHIM_H
#define CSOCKETCAN_SHIM_H

#include <errno.h>
#include <unistd.h>
#include <string.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <poll.h>
#include <time.h>
#include <sys/time.h>
#include <net/if.h>
#include <linux/can.h>
#include <linux/can/raw.h>
#include <linux/can/error.h>
#include <linux/can/netlink.h>
#include <linux/net_tstamp.h>
#include <libsocketcan.h>

static inline int csc_can_mtu(void) { return (int)CAN_MTU; }
static inline int csc_canfd_mtu(void) { return (int)CANFD_MTU; }
static inline uint32_t csc_eff_flag(void) { return CAN_EFF_FLAG; }
static inline uint32_t csc_rtr_flag(void) { return CAN_RTR_FLAG; }
static inline uint32_t csc_err_flag(void) { return CAN_ERR_FLAG; }
static inline uint32_t csc_eff_mask(void) { return CAN_EFF_MASK; }
static inline uint32_t csc_sff_mask(void) { return CAN_SFF_MASK; }
static inline uint32_t csc_err_mask(void) { return CAN_ERR_MASK; }
static inline uint8_t csc_canfd_brs(void) { return CANFD_BRS; }
static inline uint8_t csc_canfd_esi(void) { return CANFD_ESI; }

/// Opens a raw CAN socket; returns the fd or -1 with errno set.
static inline int csc_open_raw(void) {
    return socket(PF_CAN, SOCK_RAW | SOCK_CLOEXEC, CAN_RAW);
}

/// Looks up the interface index for NAME; 0 with errno set when it does not exist.
static inline int csc_ifindex(int fd, const char *name) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) return 0;
    return ifr.ifr_ifindex;
}

/// The MTU of interface NAME (CAN_MTU or CANFD_MTU), or -1 with errno set.
static inline int csc_if_mtu(int fd, const char *name) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFMTU, &ifr) < 0) return -1;
    return ifr.ifr_mtu;
}

static inline int csc_bind(int fd, int ifindex) {
    struct sockaddr_can addr;
    memset(&addr, 0, sizeof addr);
    addr.can_family = AF_CAN;
    addr.can_ifindex = ifindex;
    return bind(fd, (struct sockaddr *)&addr, sizeof addr);
}

static inline int csc_set_filters(int fd, const struct can_filter *filters, int count) {
    return setsockopt(fd, SOL_CAN_RAW, CAN_RAW_FILTER, filters,
                      (socklen_t)(sizeof(struct can_filter) * (size_t)count));
}

static inline int csc_set_err_mask(int fd, uint32_t mask) {
    can_err_mask_t m = mask;
    return setsockopt(fd, SOL_CAN_RAW, CAN_RAW_ERR_FILTER, &m, sizeof m);
}

static inline int csc_enable_fd(int fd) {
    int on = 1;
    return setsockopt(fd, SOL_CAN_RAW, CAN_RAW_FD_FRAMES, &on, sizeof on);
}

static inline int csc_enable_timestamps(int fd) {
    int on = 1;
    return setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
}

static inline int csc_enable_rxq_ovfl(int fd) {
    int on = 1;
    return setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &on, sizeof on);
}

/// Waits up to NS nanoseconds for FD to be readable (ppoll, which Glibc's Swift overlay does
/// not show without _GNU_SOURCE): 1 readable, 0 timed out, -1 with errno set.
static inline int csc_wait_readable_ns(int fd, int64_t ns) {
    struct pollfd pfd = { .fd = fd, .events = POLLIN, .revents = 0 };
    struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000), .tv_nsec = (long)(ns % 1000000000) };
    return (int)syscall(SYS_ppoll, &pfd, 1, &ts, NULL, (size_t)8);
}

/// Asks for a receive queue of BYTES: SO_RCVBUFFORCE when the process may (CAP_NET_ADMIN),
/// else SO_RCVBUF, which the kernel caps at net.core.rmem_max. Returns the size the kernel
/// granted (it doubles the request for its bookkeeping), or -1 with errno set.
static inline int csc_set_rcvbuf(int fd, int bytes) {
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0
        && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes) != 0) return -1;
    int granted = 0;
    socklen_t len = sizeof granted;
    if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &granted, &len) != 0) return -1;
    return granted;
}

static inline int csc_set_rcvtimeo_ms(int fd, int ms) {
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

/// One received frame with its metadata, filled by csc_recv.
struct csc_rx {
    struct canfd_frame frame;
    int is_fd;            // 1 when a CAN FD frame (CANFD_MTU bytes) was read
    int64_t ts_sec;       // kernel receive timestamp (0 when absent)
    int64_t ts_nsec;
    uint32_t drops;       // SO_RXQ_OVFL: frames dropped by the socket queue so far
    int has_drops;
};

/// Receives one frame with recvmsg, walking the control messages for the kernel timestamp
/// and the drop counter. Returns the byte count or -1 with errno set.
static inline ssize_t csc_recv(int fd, struct csc_rx *rx) {
    struct iovec iov;
    struct msghdr msg;
    char ctrl[CMSG_SPACE(sizeof(struct timespec)) + CMSG_SPACE(sizeof(uint32_t)) + 64];
    memset(rx, 0, sizeof *rx);
    iov.iov_base = &rx->frame;
    iov.iov_len = sizeof rx->frame;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl;
    msg.msg_controllen = sizeof ctrl;
    ssize_t n = recvmsg(fd, &msg, 0);
    if (n < 0) return n;
    rx->is_fd = (n == CANFD_MTU);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET) continue;
        if (c->cmsg_type == SO_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            rx->ts_sec = ts.tv_sec;
            rx->ts_nsec = ts.tv_nsec;
        } else if (c->cmsg_type == SO_RXQ_OVFL) {
            memcpy(&rx->drops, CMSG_DATA(c), sizeof rx->drops);
            rx->has_drops = 1;
        }
    }
    return n;
}

/// Sends a classic (is_fd == 0) or CAN FD frame. Returns the byte count or -1.
static inline ssize_t csc_send(int fd, const struct canfd_frame *frame, int is_fd) {
    return write(fd, frame, is_fd ? CANFD_MTU : CAN_MTU);
}

#endif
