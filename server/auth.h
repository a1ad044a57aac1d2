/* Bearer tokens: the `ucregd token` subcommands and the check of Authorization headers.
 * A token is "ucr_" followed by 64 hex digits of random bytes; only its SHA-256 is stored,
 * and no token text is ever logged. */
#ifndef REG_AUTH_H
#define REG_AUTH_H

#include "http.h"

/* Checks the Authorization: Bearer header against the catalog and the route's scope. On
 * success stores the token id in req and returns 0. Otherwise queues 401 (missing, unknown
 * or revoked token) or 403 (push token on an admin route) and returns -1. */
int reg_auth_check(reg_request *req, reg_auth needed);

/* Runs `token create|list|revoke` with its own arguments (argv[0] is "token"). Prints
 * results to stdout and errors to stderr. Returns the process exit code. */
int reg_token_command(int argc, char **argv);

#endif
