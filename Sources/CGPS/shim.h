#ifndef CGPS_SHIM_H
#define CGPS_SHIM_H
/* libgps (gpsd's client library) behind a few small functions: gps_data_t is a large struct
   full of unions that Swift need not see.

   libgps is loaded when the first connection is made, not linked: it brings libsystemd, dbus,
   libgcrypt and four compression libraries with it (about 1 MB resident), which a unit
   without [gnss] in its configuration should not carry. The header fixes the structure's
   layout, so the library must be the one built with it (gpsd API major 11 is libgps.so.28). */
#include <gps.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef TCU_LIBGPS_SONAME
#define TCU_LIBGPS_SONAME "libgps.so.28"
#endif

typedef struct {
    int (*open)(const char *, const char *, struct gps_data_t *);
    int (*close)(struct gps_data_t *);
    int (*read)(struct gps_data_t *, char *, int);
    bool (*waiting)(const struct gps_data_t *, int);
    int (*stream)(struct gps_data_t *, unsigned int, void *);
    const char *(*errstr)(const int);
} tcu_libgps;

/* The loaded library, or NULL with a reason in `why` (of `size` bytes). Call from one thread
   at a time: the daemon's GNSS thread is the only caller. */
static inline const tcu_libgps *tcu_gps_library(char *why, size_t size) {
    static tcu_libgps lib;
    static int loaded = 0;
    if (loaded) return &lib;
    void *handle = dlopen(TCU_LIBGPS_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        snprintf(why, size, "cannot load %s (install libgps28): %s", TCU_LIBGPS_SONAME, dlerror());
        return NULL;
    }
#define TCU_GPS_SYMBOL(field, name) \
    if (!(*(void **)&lib.field = dlsym(handle, name))) { \
        snprintf(why, size, "%s has no %s", TCU_LIBGPS_SONAME, name); dlclose(handle); return NULL; }
    TCU_GPS_SYMBOL(open, "gps_open")
    TCU_GPS_SYMBOL(close, "gps_close")
    TCU_GPS_SYMBOL(read, "gps_read")
    TCU_GPS_SYMBOL(waiting, "gps_waiting")
    TCU_GPS_SYMBOL(stream, "gps_stream")
    TCU_GPS_SYMBOL(errstr, "gps_errstr")
#undef TCU_GPS_SYMBOL
    loaded = 1;
    return &lib;
}

/* One fix as gpsd reported it (TPV); NaN where gpsd had no value. */
typedef struct {
    int mode;          /* 0 not seen, 1 no fix, 2 2D, 3 3D */
    double time;       /* UTC seconds of the fix, NaN when unknown */
    double latitude, longitude, altitude;
    double speed;      /* m/s */
    double track;      /* degrees from true north */
    double eph, epx, epy;
    int satellites;    /* used in the solution, -1 when unknown */
} tcu_gps_fix;

static inline struct gps_data_t *tcu_gps_new(void) { return calloc(1, sizeof(struct gps_data_t)); }
static inline void tcu_gps_free(struct gps_data_t *d) { free(d); }

/* 0 on success; otherwise errno or a libgps error (see tcu_gps_error). */
/* The functions below need tcu_gps_library() to have succeeded. */
static inline int tcu_gps_open(struct gps_data_t *d, const char *host, const char *port) {
    return tcu_gps_library(NULL, 0)->open(host, port, d);
}
static inline const char *tcu_gps_error(int code) { return tcu_gps_library(NULL, 0)->errstr(code); }
static inline int tcu_gps_watch(struct gps_data_t *d) {
    return tcu_gps_library(NULL, 0)->stream(d, WATCH_ENABLE | WATCH_JSON, NULL);
}
static inline void tcu_gps_close(struct gps_data_t *d) { (void)tcu_gps_library(NULL, 0)->close(d); }
static inline int tcu_gps_wait(struct gps_data_t *d, int timeout_us) {
    return tcu_gps_library(NULL, 0)->waiting(d, timeout_us) ? 1 : 0;
}

/* Reads what arrived: -1 when the connection is gone, 1 when it held a fix report (TPV), and
   0 otherwise. The satellite count comes from SKY reports and is kept between calls. */
static inline int tcu_gps_read(struct gps_data_t *d, tcu_gps_fix *out) {
    d->set = 0;
    if (tcu_gps_library(NULL, 0)->read(d, NULL, 0) < 0) return -1;
    if (!(d->set & MODE_SET)) return 0;
    out->mode = d->fix.mode;
    out->time = (d->set & TIME_SET) ? (double)d->fix.time.tv_sec + (double)d->fix.time.tv_nsec / 1e9 : NAN;
    out->latitude = d->fix.latitude;
    out->longitude = d->fix.longitude;
    out->altitude = d->fix.altMSL;
    out->speed = d->fix.speed;
    out->track = d->fix.track;
    out->eph = d->fix.eph;
    out->epx = d->fix.epx;
    out->epy = d->fix.epy;
    out->satellites = d->satellites_used;
    return 1;
}
#endif
