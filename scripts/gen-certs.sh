#!/bin/sh
# gen-certs.sh -- a development CA and certificates for objmeta's TLS
# (README.md, Security), with the openssl command line.
#
#   scripts/gen-certs.sh [--test] DIR [NAME...]
#
# Writes into DIR (created if missing; ECDSA P-256 keys, mode 600):
#   ca.pem ca.key           the cluster CA (kept if it already exists, so a
#                           re-run re-issues the certificates under it)
#   node.pem node.key       shards and coordinators (OU=peer: every role;
#                           server and client use), for localhost, 127.0.0.1
#                           and every NAME (a DNS name or an IP address)
#   admin.pem admin.key     an operator (OU=admin: admin and client roles)
#   client.pem client.key   an application (OU=client: client role)
# With --test, also certificates a server must refuse:
#   foreign-ca.pem foreign.pem foreign.key   signed by another CA
#   expired.pem expired.key                  the cluster CA's, expired
# Certificates are valid 825 days (the CA 3650). Rotate by re-running
# (same CA) and restarting the servers; a new CA (delete ca.*) needs every
# certificate re-issued and every tls-ca file replaced.
set -eu
test_certs=false
if [ "${1:-}" = --test ]; then test_certs=true; shift; fi
[ $# -ge 1 ] || { sed -n '2,22p' "$0" >&2; exit 2; }
dir=$1
shift
mkdir -p "$dir"
umask 077
cd "$dir"

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# issue NAME CA_PREFIX SUBJECT DAYS EXT: NAME.pem and NAME.key signed by CA_PREFIX.pem/.key
issue() {
    newkey "$1.key"
    openssl req -new -key "$1.key" -subj "$3" -out "$1.csr" 2>/dev/null
    printf '%s\n' "$5" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial \
        -days "$4" -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

if [ ! -f ca.pem ] || [ ! -f ca.key ]; then
    newkey ca.key
    openssl req -x509 -new -key ca.key -subj "/O=objmeta/CN=objmeta development CA" \
        -days 3650 -out ca.pem 2>/dev/null
fi
san="DNS:localhost,IP:127.0.0.1,IP:::1"
for n in "$@"; do
    case $n in
    *[!0-9.:a-fA-F]*) san="$san,DNS:$n" ;;
    *) san="$san,IP:$n" ;;
    esac
done
leaf="basicConstraints=CA:FALSE
keyUsage=digitalSignature"
issue node ca "/O=objmeta/OU=peer/CN=objmeta-node" 825 "$leaf
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san"
issue admin ca "/O=objmeta/OU=admin/CN=objmeta-admin" 825 "$leaf
extendedKeyUsage=clientAuth"
issue client ca "/O=objmeta/OU=client/CN=objmeta-client" 825 "$leaf
extendedKeyUsage=clientAuth"
if $test_certs; then
    newkey foreign-ca.key
    openssl req -x509 -new -key foreign-ca.key -subj "/CN=someone else's CA" -days 30 \
        -out foreign-ca.pem 2>/dev/null
    issue foreign foreign-ca "/O=objmeta/OU=peer/CN=foreign" 30 "$leaf
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san"
    issue expired ca "/O=objmeta/OU=peer/CN=expired" -1 "$leaf
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san"
fi
echo "gen-certs.sh: certificates in $dir"
