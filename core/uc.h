/* libuc: the uc5 codec, pack format and verification behind uc-registry.
 * The library never prints and never exits; every fallible call returns a uc_status and
 * fills a uc_error whose message names the bad value. */
#ifndef UC_H
#define UC_H

#include "uc_error.h"
#include "uc_hash.h"
#include "uc_codec.h"
#include "uc_source.h"
#include "uc_pack.h"

#define UC_VERSION_STRING "0.1.0"

#endif
