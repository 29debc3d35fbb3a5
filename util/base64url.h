/*
 * util/base64url.h -- base64url (RFC 4648 section 5) without padding, the
 * text form of the continuation tokens of the shard (shard/list.c) and the
 * coordinator (coordinator/fanout.c).
 *
 * Decoding is strict, so that every byte string has exactly one text form
 * and a token cannot be altered without changing its bytes: it rejects
 * padding ('='), any character outside A-Z a-z 0-9 - _, a length that
 * leaves one character over (n % 4 == 1), and a last character whose unused
 * low bits are not zero (non-canonical).
 *
 * Thread-safety: pure functions; safe from any thread.
 */
#ifndef OM_UTIL_BASE64URL_H
#define OM_UTIL_BASE64URL_H

#include "util/slice.h"
#include "util/status.h"

/*
 * om_base64url_encode -- append the base64url text of in (no padding, no
 * NUL) to out.
 * Returns: OM_OK; OM_E_NOMEM (out then holds a prefix of the text).
 */
om_status om_base64url_encode(om_slice in, om_buf *out);

/*
 * om_base64url_decode -- append the bytes that in encodes to out.
 * Returns: OM_OK; OM_E_INVALID when in is not canonical unpadded base64url
 *          (out then holds a prefix of the bytes); OM_E_NOMEM.
 */
om_status om_base64url_decode(om_slice in, om_buf *out);

#endif /* OM_UTIL_BASE64URL_H */
