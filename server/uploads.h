/* Resumable uploads: POST /api/uploads opens one, PATCH /api/uploads/{id} appends a chunk
 * at the offset its Content-Range names, GET shows how much arrived, and
 * PUT /api/uploads/{id}?digest=sha256:HEX checks the whole file and moves it into the blob
 * store. The bytes live in DATA/uploads/<id>; only what the catalog row counts as received
 * is trusted, so a chunk cut off midway is dropped before the next one is written. */
#ifndef REG_UPLOADS_H
#define REG_UPLOADS_H

#include "http.h"

enum MHD_Result reg_upload_create(reg_request *req);
int reg_upload_open_chunk(reg_request *req);
enum MHD_Result reg_upload_chunk(reg_request *req);
enum MHD_Result reg_upload_get(reg_request *req);
enum MHD_Result reg_upload_finish(reg_request *req);

#endif
