/*
 * rpc/tls_rec.h -- the TLS 1.3 record layer after OpenSSL's handshake
 * (RFC 8446 section 5; rpc/tls.c decides when it takes over).
 *
 * OpenSSL negotiates the connection and hands over the two application
 * traffic secrets; from then on every record of the connection is sealed
 * and opened here, with OpenSSL's AEAD (EVP) but without its record layer,
 * which costs two to three times the cipher itself per small record in
 * OpenSSL 3.0 (docs/PERFORMANCE.md, "TLS / plaintext"). What the layer
 * does, per direction: a key and IV from the secret (HKDF-Expand-Label),
 * a 64-bit record sequence number XORed into the IV as each record's nonce
 * (never reused: a key is replaced before the number could wrap), the
 * record header as additional data, the inner content type and its zero
 * padding. It accepts application data, alerts (close_notify ends the
 * stream; any other alert ends the connection with its name) and the two
 * post-handshake messages a peer may send: KeyUpdate (the read key moves
 * on; when the peer asks, ours does too) and, to a client, NewSessionTicket
 * (ignored: objmeta does not resume sessions). Anything else, a record
 * that fails authentication, or one longer than the RFC allows ends the
 * connection, and no byte of a record is delivered before its tag has been
 * checked.
 *
 * Thread-safety: one tls_rec belongs to one connection (its loop thread).
 */
#ifndef OM_RPC_TLS_REC_H
#define OM_RPC_TLS_REC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLS_REC_HEADER 5                   /* type, legacy version, length */
#define TLS_REC_PLAIN_MAX 16384            /* one record's application bytes at most */
#define TLS_REC_TAG 16                     /* the AEAD tag of every suite here */
#define TLS_REC_OVERHEAD (1 + TLS_REC_TAG) /* inner content type and tag */
/* A record's ciphertext at most (RFC 8446 5.2: 2^14 + 256). */
#define TLS_REC_CIPHER_MAX (TLS_REC_PLAIN_MAX + 256)
#define TLS_REC_SECRET_MAX 48 /* SHA-384's */

/* Inner content types (RFC 8446 5.1). */
#define TLS_CT_ALERT 21
#define TLS_CT_HANDSHAKE 22
#define TLS_CT_APPDATA 23

typedef struct tls_rec tls_rec;

/*
 * A record layer for a TLS 1.3 suite (its IANA number: 0x1301
 * AES-128-GCM-SHA256, 0x1302 AES-256-GCM-SHA384, 0x1303
 * CHACHA20-POLY1305-SHA256) with the read and write application traffic
 * secrets (slen bytes each, the suite hash's length); NULL for another
 * suite, a wrong length or no memory. server: the side this is (a server
 * refuses NewSessionTicket).
 */
tls_rec *tls_rec_new(unsigned suite, const uint8_t *rsecret, const uint8_t *wsecret, size_t slen,
                     bool server);
void tls_rec_free(tls_rec *r);

/* What opening a record found. */
typedef enum {
    TLS_REC_DATA,  /* application bytes (maybe none: a record of padding, or a ticket) */
    TLS_REC_EOF,   /* close_notify */
    TLS_REC_ERROR, /* the connection must end: tls_rec_why says why */
} tls_rec_result;

/*
 * The length of the record starting at hdr (TLS_REC_HEADER bytes: the whole
 * record is TLS_REC_HEADER + *len), or false when the header cannot start a
 * protected TLS 1.3 record (tls_rec_why says why; the connection must end).
 */
bool tls_rec_header(tls_rec *r, const uint8_t *hdr, size_t *len);

/*
 * Open one whole record (rec, n bytes: header and body) into out (room for
 * n - TLS_REC_HEADER bytes); the application bytes' count in *outlen. A
 * post-handshake message may leave a record of ours to send first
 * (tls_rec_pending).
 */
tls_rec_result tls_rec_open(tls_rec *r, const uint8_t *rec, size_t n, uint8_t *out, size_t *outlen);

/*
 * Seal the n bytes at buf + TLS_REC_HEADER (n <= TLS_REC_PLAIN_MAX; buf
 * has room for TLS_REC_HEADER + n + TLS_REC_OVERHEAD) in place as one
 * record of type ct; its length in *outlen. When the write key has sealed
 * as many records as it should, a KeyUpdate waits to be sent before the
 * next record (tls_rec_pending). False only if the cipher failed.
 */
bool tls_rec_seal(tls_rec *r, uint8_t ct, uint8_t *buf, size_t n, size_t *outlen);

/* Room tls_rec_pending and tls_rec_alert need. */
#define TLS_REC_CONTROL_MAX (TLS_REC_HEADER + 8 + TLS_REC_OVERHEAD)

/*
 * A record the layer must send before the next one it seals (a KeyUpdate:
 * asked for by the peer, or the write key's record limit): sealed into buf
 * (TLS_REC_CONTROL_MAX bytes), its length returned, and the write key
 * replaced; 0 when nothing waits.
 */
size_t tls_rec_pending(tls_rec *r, uint8_t *buf);

/*
 * Seal a fatal alert (RFC 8446 6.2; its description: the reason the layer
 * failed, or internal_error) into buf (TLS_REC_CONTROL_MAX bytes): its
 * length, 0 when none can be sent.
 */
size_t tls_rec_alert(tls_rec *r, uint8_t *buf);

/* Why the connection ended (TLS_REC_ERROR, tls_rec_header false), as text. */
const char *tls_rec_why(const tls_rec *r);

/* Tests: the write key is replaced after this many records (default 2^23). */
void tls_rec_set_update_after(tls_rec *r, uint64_t records);

#endif
