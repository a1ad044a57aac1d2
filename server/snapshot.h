/* The registry's signing key and its signed snapshot: `ucregd keygen`, GET /api/snapshot
 * and GET /api/keys. The snapshot format and the signed bytes are described in
 * snapshot_verify.h and docs/api.md. */
#ifndef REG_SNAPSHOT_H
#define REG_SNAPSHOT_H

#include "http.h"

#define REG_SIGNING_KEY_FILE "signing-key.pem"
#define REG_SNAPSHOT_LIFETIME_SECONDS (7 * 86400)

/* `ucregd keygen`: creates DATA/signing-key.pem (mode 0600) with a new Ed25519 key and
 * prints the public key in PEM. Refuses to overwrite an existing key. Returns the exit code. */
int reg_keygen_command(const char *data_dir);

/* Loads DATA/signing-key.pem when it exists. Returns 0 (also when there is no key, which
 * is logged and makes the snapshot routes return 503), or -1 after logging. */
int reg_snapshot_load_key(const char *data_dir);

/* Frees the loaded key. */
void reg_snapshot_unload_key(void);

enum MHD_Result reg_snapshot_get(reg_request *req);
enum MHD_Result reg_keys_get(reg_request *req);

#endif
