/*
 * rpc/token.c -- bucket-scoped bearer tokens for clients (README.md,
 * "Security"), verified with HMAC-SHA256 (OpenSSL).
 *
 * A token is one line of printable ASCII, six fields separated by '/':
 *
 *   om1/<kid>/<subject>/<expires>/<scope>[,<scope>...]/<mac>
 *
 *   kid      which key of the server's key file signed it ([A-Za-z0-9_-],
 *            up to 32 bytes): rotation adds a key, re-issues tokens, then
 *            drops the old key
 *   subject  who it was issued to, for logs ([A-Za-z0-9._@-], up to 64)
 *   expires  Unix time in seconds after which it is refused
 *   scope    <bucket pattern>=<r|rw>: a bucket name, a prefix ending in
 *            '*', or '*' alone; r = Retrieve, Head, Exists, List;
 *            rw = those and Store, Delete (at most RPC_TOKEN_MAX_SCOPES)
 *   mac      64 lower-case hex digits: HMAC-SHA256 with the kid's secret
 *            over every byte before the last '/'
 *
 * Why not JWT: objmeta needs one algorithm and one claim (bucket scopes);
 * a JWT library adds JSON parsing and algorithm negotiation (the source of
 * JWT's best-known vulnerabilities) to the authentication path, while this
 * format is checked in a hundred lines with the OpenSSL that TLS needs
 * anyway, and tokens can be minted with the openssl command line
 * (scripts/gen-token.sh). The separators never occur inside a field, so
 * the MAC covers an unambiguous string.
 *
 * Key file: one key a line, "<kid> <secret as hex, 32 bytes or more>";
 * blank lines and lines starting with '#' are ignored.
 */
#define OM_LOG_MODULE "rpc"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc_int.h"
#include "util/log.h"

#define TOKEN_MAC_HEX 64

struct rpc_keyring {
    size_t n;
    struct {
        char kid[RPC_TOKEN_KID_MAX + 1];
        uint8_t secret[64];
        size_t len;
    } k[RPC_KEYRING_MAX];
};

static int
hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static bool
kid_ok(const char *s, size_t n)
{
    if (n == 0 || n > RPC_TOKEN_KID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

om_status
rpc_keyring_load(const char *path, rpc_keyring **out, char *err, size_t errlen)
{
    char line[512];
    unsigned lineno = 0;
    FILE *f = fopen(path, "r");
    rpc_keyring *kr;

    if (f == NULL)
        return om_err_invalid(err, errlen, "token keys: cannot open %s", path);
    kr = calloc(1, sizeof(*kr));
    if (kr == NULL) {
        fclose(f);
        return OM_ERR(OM_E_NOMEM);
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char kid[128], hex[260];
        size_t hl;
        lineno++;
        if (line[0] == '#' || strspn(line, " \t\r\n") == strlen(line))
            continue;
        if (sscanf(line, "%127s %259s", kid, hex) != 2 || !kid_ok(kid, strlen(kid)) ||
            (hl = strlen(hex)) % 2 != 0 || hl < 64 || hl > 128 || kr->n == RPC_KEYRING_MAX) {
            fclose(f);
            free(kr);
            return om_err_invalid(err, errlen,
                                  "token keys: %s line %u: want \"<kid> <hex secret of 32 to 64 "
                                  "bytes>\" (at most %u keys)",
                                  path, lineno, RPC_KEYRING_MAX);
        }
        for (size_t i = 0; i < hl / 2; i++) {
            int a = hexval(hex[2 * i]), b = hexval(hex[2 * i + 1]);
            if (a < 0 || b < 0) {
                fclose(f);
                free(kr);
                return om_err_invalid(err, errlen, "token keys: %s line %u: secret is not hex",
                                      path, lineno);
            }
            kr->k[kr->n].secret[i] = (uint8_t)(a << 4 | b);
        }
        snprintf(kr->k[kr->n].kid, sizeof(kr->k[kr->n].kid), "%s", kid);
        kr->k[kr->n].len = hl / 2;
        kr->n++;
    }
    fclose(f);
    if (kr->n == 0) {
        free(kr);
        return om_err_invalid(err, errlen, "token keys: %s holds no key", path);
    }
    *out = kr;
    return OM_OK;
}

void
rpc_keyring_free(rpc_keyring *kr)
{
    if (kr != NULL)
        OPENSSL_cleanse(kr, sizeof(*kr));
    free(kr);
}

/* Next '/'-separated field of [*p, end) into (f, fn); false when none is left. */
static bool
token_field(const char **p, const char *end, const char **f, size_t *fn)
{
    const char *q;

    if (*p > end)
        return false;
    q = memchr(*p, '/', (size_t)(end - *p));
    if (q == NULL)
        q = end;
    *f = *p;
    *fn = (size_t)(q - *p);
    *p = q + 1;
    return true;
}

static om_status
token_scopes(const char *s, size_t n, rpc_token *t, char *err, size_t errlen)
{
    const char *end = s + n;

    t->n = 0;
    while (s < end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *e = comma ? comma : end, *eq = memchr(s, '=', (size_t)(e - s));
        size_t pl = eq ? (size_t)(eq - s) : 0, al = eq ? (size_t)(e - eq - 1) : 0;
        if (eq == NULL || pl == 0 || pl > RPC_TOKEN_PATTERN_MAX || t->n == RPC_TOKEN_MAX_SCOPES ||
            !((al == 1 && eq[1] == 'r') || (al == 2 && eq[1] == 'r' && eq[2] == 'w')))
            return om_err_invalid(err, errlen,
                                  "token: bad scope \"%.*s\" (want <bucket pattern>=r or =rw, at "
                                  "most %u)",
                                  (int)(e - s), s, RPC_TOKEN_MAX_SCOPES);
        for (size_t i = 0; i < pl; i++) {
            char ch = s[i];
            bool ok = islower((unsigned char)ch) || isdigit((unsigned char)ch) || ch == '.' ||
                      ch == '-' || (ch == '*' && i == pl - 1);
            if (!ok)
                return om_err_invalid(err, errlen, "token: bad bucket pattern \"%.*s\"", (int)pl,
                                      s);
        }
        memcpy(t->scope[t->n].pattern, s, pl);
        t->scope[t->n].pattern[pl] = '\0';
        t->scope[t->n].write = al == 2;
        t->n++;
        s = e + (comma ? 1 : 0);
    }
    return OM_OK;
}

om_status
rpc_token_verify(const rpc_keyring *kr, const char *tok, uint64_t now_s, rpc_token *out, char *err,
                 size_t errlen)
{
    size_t n = strlen(tok);
    const char *end = tok + n, *p = tok, *f[6];
    size_t fn[6];
    uint8_t mac[32], want[32];
    unsigned maclen = 0;

    for (int i = 0; i < 6; i++)
        if (!token_field(&p, end, &f[i], &fn[i]))
            return om_err_invalid(err, errlen, "token: not om1/kid/subject/expires/scopes/mac");
    if (p <= end || fn[0] != 3 || memcmp(f[0], "om1", 3) != 0 || fn[5] != TOKEN_MAC_HEX)
        return om_err_invalid(err, errlen, "token: not om1/kid/subject/expires/scopes/mac");
    size_t ki = 0;
    while (ki < kr->n &&
           !(strlen(kr->k[ki].kid) == fn[1] && memcmp(kr->k[ki].kid, f[1], fn[1]) == 0))
        ki++;
    if (ki == kr->n)
        return om_err_invalid(err, errlen, "token: unknown key id \"%.*s\" (rotated out?)",
                              (int)(fn[1] < 32 ? fn[1] : 32), f[1]);
    for (int i = 0; i < 32; i++) {
        int a = hexval(f[5][2 * i]), b = hexval(f[5][2 * i + 1]);
        if (a < 0 || b < 0)
            return om_err_invalid(err, errlen, "token: the signature is not hex");
        want[i] = (uint8_t)(a << 4 | b);
    }
    if (HMAC(EVP_sha256(), kr->k[ki].secret, (int)kr->k[ki].len, (const uint8_t *)tok,
             (size_t)(f[5] - 1 - tok), mac, &maclen) == NULL ||
        maclen != sizeof(mac) || CRYPTO_memcmp(mac, want, sizeof(mac)) != 0)
        return om_err_invalid(err, errlen, "token: bad signature");
    /* signed: the fields are the issuer's; check their form all the same */
    if (fn[2] == 0 || fn[2] >= sizeof(out->subject))
        return om_err_invalid(err, errlen, "token: bad subject");
    uint64_t exp = 0;
    for (size_t i = 0; i < fn[3]; i++) {
        if (!isdigit((unsigned char)f[3][i]) || exp > UINT64_MAX / 10 - 9)
            return om_err_invalid(err, errlen, "token: bad expiry");
        exp = exp * 10 + (uint64_t)(f[3][i] - '0');
    }
    if (fn[3] == 0)
        return om_err_invalid(err, errlen, "token: bad expiry");
    if (exp <= now_s)
        return om_err_invalid(err, errlen, "token: expired %llu s ago",
                              (unsigned long long)(now_s - exp));
    OM_TRY(token_scopes(f[4], fn[4], out, err, errlen));
    memcpy(out->subject, f[2], fn[2]);
    out->subject[fn[2]] = '\0';
    out->expires_s = exp;
    return OM_OK;
}

bool
rpc_token_allows(const rpc_token *t, const char *bucket, bool write)
{
    for (size_t i = 0; i < t->n; i++) {
        const char *pat = t->scope[i].pattern;
        size_t pl = strlen(pat);
        bool match =
            pat[pl - 1] == '*' ? strncmp(bucket, pat, pl - 1) == 0 : strcmp(bucket, pat) == 0;
        if (match && (!write || t->scope[i].write))
            return true;
    }
    return false;
}

void
rpc_mac(const uint8_t *key, size_t keylen, const uint8_t *p, size_t n, uint8_t tag[RPC_MAC_LEN])
{
    static const uint8_t nokey = 0;
    uint8_t full[32];
    unsigned len = 0;

    /* HMAC cannot fail for SHA-256 with in-memory inputs; zero the tag if it did */
    if (HMAC(EVP_sha256(), keylen ? key : &nokey, (int)keylen, p, n, full, &len) == NULL ||
        len != sizeof(full))
        memset(full, 0, sizeof(full));
    memcpy(tag, full, RPC_MAC_LEN);
}

bool
rpc_mac_equal(const uint8_t a[RPC_MAC_LEN], const uint8_t b[RPC_MAC_LEN])
{
    return CRYPTO_memcmp(a, b, RPC_MAC_LEN) == 0;
}

om_status
rpc_secret_load(const char *path, uint8_t *out, size_t cap, size_t *n, char *err, size_t errlen)
{
    rpc_keyring *kr = NULL;

    OM_TRY(rpc_keyring_load(path, &kr, err, errlen));
    if (kr->k[0].len > cap) {
        rpc_keyring_free(kr);
        return om_err_invalid(err, errlen, "secret in %s is longer than %zu bytes", path, cap);
    }
    memcpy(out, kr->k[0].secret, kr->k[0].len);
    *n = kr->k[0].len;
    rpc_keyring_free(kr);
    return OM_OK;
}
