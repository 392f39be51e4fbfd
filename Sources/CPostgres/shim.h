#ifndef CPOSTGRES_SHIM_H
#define CPOSTGRES_SHIM_H
// libpq, PostgreSQL's client library: the reference backend's store when it is given a
// postgresql:// URL (SQLite stays its embedded default).
#include <libpq-fe.h>
#endif
