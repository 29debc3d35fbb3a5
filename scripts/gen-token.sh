#!/bin/sh
# gen-token.sh -- make a token key or mint a bucket-scoped client token
# (format: rpc/token.c; README.md, Security), with the openssl command line.
#
#   scripts/gen-token.sh key KID >> token.keys
#       print a new key line "<kid> <64 hex digits>" (32 random bytes)
#   scripts/gen-token.sh mint KEYFILE KID SUBJECT TTL_SECONDS SCOPES
#       print a token signed with key KID of KEYFILE, valid TTL_SECONDS from
#       now, for SCOPES: "<bucket pattern>=<r|rw>[,...]", e.g.
#       "photos=rw,logs-*=r" ('*' alone: every bucket)
#
# Servers verify tokens with the same key file (token-keys = FILE). To
# rotate: add a key with a new KID, give the servers the new file (restart),
# mint new tokens with the new KID, and remove the old key once its tokens
# have expired.
set -eu
usage() { sed -n '2,17p' "$0" >&2; exit 2; }
[ $# -ge 1 ] || usage
case $1 in
key)
    [ $# -eq 2 ] || usage
    printf '%s %s\n' "$2" "$(openssl rand -hex 32)"
    ;;
mint)
    [ $# -eq 6 ] || usage
    keyfile=$2 kid=$3 subject=$4 ttl=$5 scopes=$6
    secret=$(awk -v k="$kid" '$1 == k { print $2; exit }' "$keyfile")
    [ -n "$secret" ] || { echo "gen-token.sh: no key $kid in $keyfile" >&2; exit 1; }
    case $ttl in ''|*[!0-9]*) echo "gen-token.sh: TTL_SECONDS must be a number" >&2; exit 2 ;; esac
    body="om1/$kid/$subject/$(( $(date +%s) + ttl ))/$scopes"
    mac=$(printf '%s' "$body" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$secret" -r |
        cut -d' ' -f1)
    printf '%s/%s\n' "$body" "$mac"
    ;;
*) usage ;;
esac
