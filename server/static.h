/* Website files served from --static-dir. */
#ifndef REG_STATIC_H
#define REG_STATIC_H

#include "http.h"

/* Returns 1 when a request with no API route should be served from the static directory. */
int reg_static_applies(const reg_request *req);

/* Serves the file named by the request path; a directory serves its index.html. */
enum MHD_Result reg_static_get(reg_request *req);

#endif
