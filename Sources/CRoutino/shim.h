// Routino (Debian's libroutino-dev): quickest routes on a database that planetsplitter built
// from an OpenStreetMap extract. The library keeps its profiles and translations in globals:
// OnlineServices.Router calls it under one lock.
#ifndef TCU_CROUTINO_SHIM_H
#define TCU_CROUTINO_SHIM_H
#include <routino.h>

// The macro is not visible to Swift.
static inline int tcu_routino_check_api(void) { return Routino_CheckAPIVersion(); }
// The last error, read under the caller's lock (a global in the library).
static inline int tcu_routino_errno(void) { return Routino_errno; }
#endif
