#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine that has only the Rust toolchain:
# installs the tools the tests drive for real (openssl's s_client for TLS version probes, npm to fetch the
# CC0 GeoIP database the geo tests read), then runs every test target. Servers the tests start are bound
# to 127.0.0.1 on port 0 and stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

# The real CC0 country database (about 8 MB), fetched once into target/ with `npm pack`.
TOLLGATE_CC0_MMDB="$(bash deploy/fetch-geoip.sh "$PWD/target/geo" | tail -n 1)"
export TOLLGATE_CC0_MMDB

cargo test --locked --all-targets
