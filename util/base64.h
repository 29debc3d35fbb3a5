/*
 * util/base64.h -- RFC 4648 base64 with the standard alphabet and padding,
 * as JSON APIs (etcd's v3 gateway, protobuf's JSON mapping) carry bytes.
 * (Tokens use the unpadded URL alphabet: util/base64url.h.)
 *
 * Thread-safety: pure functions; safe from any thread.
 */
#ifndef OM_UTIL_BASE64_H
#define OM_UTIL_BASE64_H

#include "util/slice.h"
#include "util/status.h"

/* om_base64_encode -- append the encoding of in to out (no NUL counted in out->n). */
om_status om_base64_encode(om_slice in, om_buf *out);

/*
 * om_base64_decode -- append the bytes encoded by in to out. Padding is
 * optional; whitespace is not allowed.
 * Returns: OM_OK; OM_E_INVALID for a character outside the alphabet, a
 * misplaced '=' or an impossible length (out then holds a partial result).
 */
om_status om_base64_decode(om_slice in, om_buf *out);

#endif /* OM_UTIL_BASE64_H */
