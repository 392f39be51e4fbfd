// libxml2 (Debian's libxml2-dev): the DATEX II traffic publications the online services read.
#ifndef TCU_CLIBXML2_SHIM_H
#define TCU_CLIBXML2_SHIM_H
#include <libxml/parser.h>
#include <libxml/tree.h>
// The streaming reader: a fleet's SUMO trajectories (FCD output) are read as the fleet runs.
#include <libxml/xmlreader.h>

// xmlFree is a global function pointer: called through this, Swift sees a function.
static inline void tcu_xml_free(void *p) { xmlFree(p); }
#endif
