#ifndef CGPS_SHIM_H
#define CGPS_SHIM_H
/* libgps (gpsd's client library) behind a few small functions: gps_data_t is a large struct
   full of unions that Swift need not see. */
#include <gps.h>
#include <math.h>
#include <stdlib.h>

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
static inline int tcu_gps_open(struct gps_data_t *d, const char *host, const char *port) {
    return gps_open(host, port, d);
}
static inline const char *tcu_gps_error(int code) { return gps_errstr(code); }
static inline int tcu_gps_watch(struct gps_data_t *d) { return gps_stream(d, WATCH_ENABLE | WATCH_JSON, NULL); }
static inline void tcu_gps_close(struct gps_data_t *d) { (void)gps_close(d); }
static inline int tcu_gps_wait(struct gps_data_t *d, int timeout_us) { return gps_waiting(d, timeout_us) ? 1 : 0; }

/* Reads what arrived: -1 when the connection is gone, 1 when it held a fix report (TPV), and
   0 otherwise. The satellite count comes from SKY reports and is kept between calls. */
static inline int tcu_gps_read(struct gps_data_t *d, tcu_gps_fix *out) {
    d->set = 0;
    if (gps_read(d, NULL, 0) < 0) return -1;
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
