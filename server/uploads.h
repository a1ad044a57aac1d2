/* Resumable uploads: POST /api/uploads opens one, PATCH /api/uploads/{id} appends a chunk
 * at the offset its Content-Range names, GET shows how much arrived, and
 * PUT /api/uploads/{id}?digest=sha256:HEX checks the whole file and moves it into the blob
 * store. The bytes live in DATA/uploads/<id>. Each chunk body is staged in DATA/tmp and
 * appended only when it arrived whole and still starts at the count in the catalog row. */
#ifndef REG_UPLOADS_H
#define REG_UPLOADS_H

#include "http.h"

enum MHD_Result reg_upload_create(reg_request *req);
int reg_upload_open_chunk(reg_request *req);
enum MHD_Result reg_upload_chunk(reg_request *req);
enum MHD_Result reg_upload_get(reg_request *req);
enum MHD_Result reg_upload_finish(reg_request *req);

/* Removes every upload that got no chunk for --upload-expiry seconds: its file and row.
 * Returns how many were removed, or -1 on a catalog error. */
int reg_uploads_expire(void);

/* Removes files in DATA/uploads that have no catalog row. Call only before serving, because
 * it takes no upload lock. Returns 0, or -1 when the directory cannot be read. */
int reg_uploads_remove_orphans(void);

/* Start and stop the thread that calls reg_uploads_expire periodically. Start returns 0, or
 * -1 after logging. */
int reg_uploads_start_sweeper(void);
void reg_uploads_stop_sweeper(void);

#endif
