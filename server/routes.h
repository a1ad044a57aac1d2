/* The route table of the REST API, matched in order by http.c. */
#ifndef REG_ROUTES_H
#define REG_ROUTES_H

#include <stddef.h>

#include "http.h"

extern const reg_route reg_routes[];
extern const size_t reg_route_count;

/* GET /healthz and GET /metrics. */
enum MHD_Result reg_health_get(reg_request *req);
enum MHD_Result reg_metrics_get(reg_request *req);

#endif
