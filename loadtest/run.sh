#!/usr/bin/env bash
# Whole-system load test (issue #12): Tollgate against nginx, side by side on this machine, scenario by
# scenario, each one alternating Tollgate and nginx runs (A B A B), reported as a table of ratios.
#
#   bash loadtest/run.sh                        # every scenario, 10 s per run, 2 rounds (~8 min)
#   SHORT=1 bash loadtest/run.sh                # 2 s per run, 5,000 idle connections (~2 min)
#   SMOKE=1 bash loadtest/run.sh                # 1 s per run, 1 round, 200 idle connections: for CI (~40 s)
#   SCENARIOS=1,4 TOLLGATE_BIN=target/debug/tollgate PERF_DOC=/tmp/perf.md bash loadtest/run.sh
#
# Scenarios (see loadtest/README.md): 1 keep-alive HTTP/1.1 at 32 and 128 connections, 2 HTTP/2 multiplexed,
# 3 one core each (server CPU per request), 4 new connection per request (full and resumed handshakes),
# 5 idle TLS connections (memory per connection), 6 latency at a fixed load, 7 nginx proxy_pass vs Tollgate.
# Also measured: the fsync latency of the spool's disk. Output: the table on stdout, and the generated part of
# docs/performance.md (between its loadtest markers; PERF_DOC=path writes elsewhere). Traffic goes to 127.0.0.1
# only; every process started here is stopped by PID on exit (also on failure) and the temp dir is removed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$PATH:/usr/sbin:/sbin"
# shellcheck source=loadtest/lib/common.sh
source "$ROOT/loadtest/lib/common.sh"
source "$ROOT/loadtest/lib/tollgate.sh"
source "$ROOT/loadtest/lib/nginx.sh"
source "$ROOT/loadtest/lib/clients.sh"
source "$ROOT/loadtest/lib/scenarios.sh"

# ---- parameters (bounded) ----------------------------------------------------------------------------------
if [[ "${SMOKE:-0}" == 1 ]]; then
  MODE=smoke; d=1 ROUNDS=1 IDLE_N=200 FSYNC_N=50
elif [[ "${SHORT:-0}" == 1 ]]; then
  MODE=short; d=2 ROUNDS=2 IDLE_N=5000 FSYNC_N=500
else
  MODE=full; d=10 ROUNDS=2 IDLE_N=10000 FSYNC_N=500
fi
DURATION="${DURATION:-$d}"
ROUNDS="${ROUNDS_OVERRIDE:-$ROUNDS}"
IDLE_N="${IDLE_N_OVERRIDE:-$IDLE_N}"
HS_PROCS=8   # handshake.py processes, one connection at a time each (scenario 4)
LAT_CONNS=16 # h2load connections at the fixed load (scenario 6)
SCENARIOS="${SCENARIOS:-1,2,3,4,5,6,7}"
PERF_DOC="${PERF_DOC:-$ROOT/docs/performance.md}"
is_int_in "$DURATION" 1 120 || die "DURATION must be whole seconds in 1..120 (got '$DURATION')"
is_int_in "$ROUNDS" 1 5 || die "ROUNDS_OVERRIDE must be in 1..5 (got '$ROUNDS')"
is_int_in "$IDLE_N" 1 50000 || die "IDLE_N_OVERRIDE must be in 1..50000 (got '$IDLE_N')"
[[ "$SCENARIOS" =~ ^[1-7](,[1-7])*$ ]] || die "SCENARIOS must be a comma list of 1..7 (got '$SCENARIOS')"
selected() { [[ ",$SCENARIOS," == *",$1,"* ]]; }
BODY="$ROOT/tests/fixtures/sample_event.json"
LUA="$ROOT/loadtest/events.lua"
[[ -f "$BODY" ]] || die "missing $BODY"
(( $(nproc) >= 2 )) || die "needs at least 2 cores (scenario 3 pins the client to CPU 0 and the server to CPU 1)"
T_START=$SECONDS

# ---- temp dir and cleanup ---------------------------------------------------------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/tollgate-loadtest.XXXXXX")"
POLICY_RC_CREATED=0
cleanup() {
  local rc=$?
  stop_all_own
  if (( POLICY_RC_CREATED )); then rm -f /usr/sbin/policy-rc.d; fi
  if (( rc != 0 )); then
    local f
    for f in "$TMP"/tg-*/err.log "$TMP/nginx/error.log"; do
      [[ -s "$f" ]] || continue
      echo "---- last lines of ${f#"$TMP"/} ----" >&2
      tail -n 20 "$f" >&2
    done
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- tools ------------------------------------------------------------------------------------------------
# From Debian: nginx, wrk, nghttp2-client (h2load), openssl, python3. Installing nginx must not start the
# distribution's service: a policy-rc.d that forbids it is put in place for the install (and removed after,
# only if this script created it).
need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
if (( ${#need[@]} )); then
  (( $(id -u) == 0 )) || die "missing ${need[*]}; run as root (or install them) to let this script apt-get them"
  log "installing ${need[*]}"
  if [[ " ${need[*]} " == *" nginx "* && ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# loadtest/run.sh: do not start services while installing\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  if (( POLICY_RC_CREATED )); then rm -f /usr/sbin/policy-rc.d; POLICY_RC_CREATED=0; fi
fi
command -v timeout >/dev/null || die "coreutils 'timeout' missing"

# ---- tollgate binary --------------------------------------------------------------------------------------
if [[ -n "${TOLLGATE_BIN:-}" ]]; then
  BIN="$TOLLGATE_BIN"
else
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet)
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/tollgate"
fi
[[ -x "$BIN" ]] || die "no tollgate binary at $BIN"

# ---- open files: scenario 5 holds IDLE_N connections (client and server each need one fd per connection) ----
want=$((IDLE_N * 2 + 4096))
ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if selected 5 && (( $(ulimit -n) < IDLE_N + 1024 )); then
  die "ulimit -n is $(ulimit -n) (hard $(ulimit -Hn)); scenario 5 needs at least $((IDLE_N + 1024))"
fi

# ---- setup: certificate and keys (Tollgate generates them), preflight of both targets ---------------------
mkdir -p "$TMP/tls" "$TMP/keys" "$TMP/out"
: >"$TMP/results.txt"
: >"$TMP/commands.txt"
: >"$TMP/meta.txt"
# The clients post as a server-side caller: the tenant's bearer secret, from loopback (both targets get it).
(umask 077 && openssl rand -hex 32 >"$TMP/server.secret")
LOADTEST_BEARER="$(cat "$TMP/server.secret")"
export LOADTEST_BEARER

preflight() { # preflight NAME PORT: certificate verified against Tollgate's dev CA, status 204, h2 by ALPN
  local status proto alpn
  status="$({
    printf 'POST /v1/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n'
    printf 'Authorization: Bearer %s\r\n' "$LOADTEST_BEARER"
    printf 'Content-Length: %d\r\nConnection: close\r\n\r\n' "$(wc -c <"$BODY")"
    cat "$BODY"
  } | timeout 10 openssl s_client -quiet -connect "127.0.0.1:$2" -servername localhost \
        -CAfile "$TMP/tls/dev-ca.pem" -verify_return_error 2>/dev/null | head -n 1 | tr -d '\r')" || true
  [[ "$status" == "HTTP/1.1 204"* ]] || die "$1 preflight: expected 'HTTP/1.1 204', got '${status:-nothing}'"
  proto="$(timeout 10 openssl s_client -brief -alpn h2,http/1.1 -connect "127.0.0.1:$2" -servername localhost \
    </dev/null 2>&1 | awk -F': ' '/^Protocol version/ {v=$2} /^Ciphersuite/ {c=$2} END {print v, c}')"
  alpn="$(timeout 10 openssl s_client -alpn h2,http/1.1 -connect "127.0.0.1:$2" -servername localhost \
    </dev/null 2>/dev/null | awk -F': ' '/^ALPN protocol/ {print $2}')"
  [[ "$alpn" == h2 ]] || die "$1 preflight: ALPN chose '${alpn:-nothing}', expected h2"
  log "$1 preflight: $status, $proto, ALPN $alpn (certificate verified against tollgate's dev CA)"
  echo "META preflight_$1=$status, $proto, ALPN $alpn" >>"$TMP/meta.txt"
}
start_tollgate setup
for f in leaf.pem leaf.key dev-ca.pem; do [[ -f "$TMP/tls/$f" ]] || die "tollgate did not generate tls/$f"; done
SPOOL_FS="$(df -PT "$TG_RUN" | awk 'NR==2 {print $2}')"
log "tollgate pid $TG_PID on 127.0.0.1:$TG_PORT (spool on $SPOOL_FS)"
preflight tollgate "$TG_PORT"
stop_tollgate 1 0
start_nginx return
log "nginx pid $NG_PID on 127.0.0.1:$NG_PORT ($(nginx -v 2>&1 | sed 's/.*version: //'))"
preflight nginx "$NG_PORT"
stop_nginx
if selected 7; then start_nginx proxy; preflight nginx-proxy "$NG_PORT"; stop_nginx; fi

# ---- the machine ------------------------------------------------------------------------------------------
BUSY="$(busy_pct)"
log "machine busy ${BUSY}% in the second before the load (both servers stopped)"
(( BUSY < 15 )) || log "WARNING: machine busy: something else is using the CPU; the numbers will be skewed"
{
  echo "META mode=$MODE duration_s=$DURATION rounds=$ROUNDS idle_n=$IDLE_N scenarios=$SCENARIOS busy_pct=$BUSY"
  echo "META cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "META cores=$(nproc) mem=$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "META kernel=$(uname -r) os=$(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "META spool_fs=$SPOOL_FS ($(df -P "$TMP" | awk 'NR==2 {print $1}'))"
  echo "META nginx=$(nginx -v 2>&1 | sed 's/.*version: //')"
  echo "META wrk=$(wrk -v 2>&1 | awk 'NR==1 {print $2}')"
  echo "META h2load=$(h2load --version | awk '{print $2}')"
  echo "META openssl=$(openssl version | awk '{print $1, $2}') python=$(python3 -V | awk '{print $2}')"
  echo "META tollgate=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' (src modified)') binary=$( [[ -n "${TOLLGATE_BIN:-}" ]] && echo "$BIN" || echo 'cargo build --release')"
} >>"$TMP/meta.txt"

# ---- fsync latency of the spool's disk -------------------------------------------------------------------
python3 "$ROOT/loadtest/fsync.py" "$TMP" "$FSYNC_N" | tee -a "$TMP/meta.txt" | sed 's/^/loadtest: /' >&2
sed -i 's/^FSYNC /META fsync_/; s/ median_us=/ fsync_median_us=/; s/ p99_us=/ fsync_p99_us=/' "$TMP/meta.txt"

# ---- scenarios --------------------------------------------------------------------------------------------
for s in 1 2 3 4 5 6 7; do
  selected "$s" || continue
  t0=$SECONDS
  "scenario_$s"
  echo "META time_scenario_$s=$((SECONDS - t0))" >>"$TMP/meta.txt"
done
echo "META time_total=$((SECONDS - T_START))" >>"$TMP/meta.txt"
# fsync again after the load: other writers on the disk move it a lot (the bound uses the one before).
python3 "$ROOT/loadtest/fsync.py" "$TMP" "$FSYNC_N" \
  | sed 's/^FSYNC n=[0-9]* median_us=/META fsync_after_median_us=/; s/ p99_us=/ fsync_after_p99_us=/' >>"$TMP/meta.txt"

# ---- report -----------------------------------------------------------------------------------------------
python3 "$ROOT/loadtest/report.py" --results "$TMP/results.txt" --meta "$TMP/meta.txt" \
  --commands "$TMP/commands.txt" --doc "$PERF_DOC"
log "done in $((SECONDS - T_START)) s; wrote the generated part of $PERF_DOC"
