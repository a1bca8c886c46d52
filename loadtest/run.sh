#!/usr/bin/env bash
# Whole-system load test: Tollgate against nginx, side by side on this machine, reported as a ratio.
#
#   bash loadtest/run.sh                      # 10 s per target, 32 connections, 2 wrk threads
#   SHORT=1 bash loadtest/run.sh              # 2 s per target (a smoke run CI could afford)
#   DURATION=30 CONNECTIONS=64 bash loadtest/run.sh
#
# Tollgate runs its full pipeline (TLS, HTTP/1.1, decode, validate, minimize, HMAC, spool append + fsync before
# the 204). The peer, nginx, terminates TLS with the same certificate and key and answers `return 204;` — so the
# ratio is "full Tollgate pipeline with fsync" against "nginx TLS termination returning 204". Both get the same
# wrk run, one after the other. Traffic goes to 127.0.0.1 only; every process started here is stopped by PID on
# exit and the temp dir is removed. See loadtest/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$PATH:/usr/sbin:/sbin"

# ---- parameters (bounded) ----------------------------------------------------------------------------------
if [[ "${SHORT:-0}" == "1" ]]; then default_duration=2; else default_duration=10; fi
DURATION="${DURATION:-$default_duration}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-2}"

die() { echo "loadtest: $*" >&2; exit 1; }
is_int_in() { [[ "$1" =~ ^[0-9]+$ ]] && (( $1 >= $2 && $1 <= $3 )); }
is_int_in "$DURATION" 1 120 || die "DURATION must be whole seconds in 1..120 (got '$DURATION')"
is_int_in "$CONNECTIONS" 1 1024 || die "CONNECTIONS must be in 1..1024 (got '$CONNECTIONS')"
is_int_in "$THREADS" 1 64 || die "THREADS must be in 1..64 (got '$THREADS')"
(( CONNECTIONS >= THREADS )) || die "CONNECTIONS ($CONNECTIONS) must be >= THREADS ($THREADS)"

BODY="$ROOT/tests/fixtures/sample_event.json"
LUA="$ROOT/loadtest/events.lua"
[[ -f "$BODY" ]] || die "missing $BODY"

# ---- tools ------------------------------------------------------------------------------------------------
# nginx, wrk and openssl come from Debian. (Where no policy-rc.d forbids it, installing nginx also starts the
# distribution's own service on port 80; this script never uses or touches it.)
need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if (( ${#need[@]} )); then
  echo "loadtest: installing ${need[*]}"
  apt-get update -qq
  for p in "${need[@]}"; do
    cand="$(apt-cache policy "$p" | awk '/Candidate:/ {print $2}')"
    [[ -n "$cand" && "$cand" != "(none)" ]] || die "package $p is not available from apt"
  done
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v timeout >/dev/null || die "coreutils 'timeout' missing"

# ---- build ------------------------------------------------------------------------------------------------
echo "loadtest: cargo build --release"
(cd "$ROOT" && cargo build --release --quiet)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/tollgate"
[[ -x "$BIN" ]] || die "no binary at $BIN"

# ---- temp dir and cleanup ---------------------------------------------------------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/tollgate-loadtest.XXXXXX")"
TOLLGATE_PID=""
NGINX_PID=""

stop_pid() { # stop_pid PID NAME: SIGTERM, wait up to 10 s, then SIGKILL
  local pid="$1" name="$2" i
  [[ -n "$pid" ]] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "loadtest: $name (pid $pid) ignored SIGTERM for 10 s, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  stop_pid "$TOLLGATE_PID" tollgate
  stop_pid "$NGINX_PID" nginx
  if (( rc != 0 )); then
    for f in tollgate.err nginx/error.log; do
      if [[ -s "$TMP/$f" ]]; then echo "---- last lines of $f ----" >&2; tail -n 20 "$TMP/$f" >&2; fi
    done
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- tollgate ---------------------------------------------------------------------------------------------
DATA="$TMP/data"
mkdir -p "$DATA"
# wrk posts as a server-side caller: the tenant's bearer secret, from loopback (both targets get the header).
(umask 077 && openssl rand -hex 32 >"$TMP/server.secret")
LOADTEST_BEARER="$(cat "$TMP/server.secret")"
export LOADTEST_BEARER
cat >"$TMP/tollgate.toml" <<EOF
# Written by loadtest/run.sh; the shape of config/tollgate.toml, redirect and admin listeners off.
data_dir = "$DATA"

[listen]
public = "127.0.0.1:0"

[tls]
cert = "$DATA/tls/leaf.pem"
key = "$DATA/tls/leaf.key"
dev_self_signed = true
min_version = "1.2"

[limits]
max_body_bytes = 65536
max_events = 100
max_depth = 16
max_string_bytes = 2048
max_object_keys = 64
max_connections = 4096
max_header_count = 64
max_header_bytes = 16384
h2_max_concurrent_streams = 100

[timeouts]
tls_handshake_ms = 10000
header_read_ms = 10000
body_read_ms = 10000
idle_ms = 60000
shutdown_grace_ms = 30000

[spool]
dir = "spool"
segment_bytes = 67108864
max_bytes = 1073741824
commit_window_us = ${COMMIT_WINDOW_US:-0}
max_batch_bytes = 4194304
queue_depth = 1024
active_key = "s1"
[[spool.keys]]
id = "s1"
file = "$DATA/keys/spool-s1.key"
generate_if_missing = true

# Rate limits on, as in config/tollgate.toml, but high enough that one loopback client never meets them:
# their cost is measured, not their refusals.
[guard.ratelimit]
mode = "enforce"
per_address = { rate_per_s = 10000000, burst = 10000000 }
per_address_tenant = { rate_per_s = 10000000, burst = 10000000 }
per_tenant = { rate_per_s = 10000000, burst = 10000000 }

[guard.anomaly]
mode = "enforce"
threshold = 5
paranoia = 1

# Bans and behaviour windows on, as in config/tollgate.toml; the event bound is raised so the one loopback
# client is never banned for its (intended) impossible rate.
[guard.bans]
mode = "enforce"

[guard.behaviour]
mode = "enforce"
max_events = 4000000000

# The embedded default sink is on, as in config/tollgate.toml: its cost is part of what is measured.
[[sinks]]
name = "file"
type = "file"
dir = "out"

[[tenants]]
site = "demo"
allowed_origins = ["https://shop.example"]
server_secret_file = "$TMP/server.secret"
server_networks = ["127.0.0.0/8"]
active_key = "k1"
[[tenants.keys]]
id = "k1"
file = "$DATA/keys/demo-k1.key"
generate_if_missing = true
EOF

"$BIN" run -c "$TMP/tollgate.toml" >"$TMP/tollgate.out" 2>"$TMP/tollgate.err" &
TOLLGATE_PID=$!
TG_PORT=""
for ((i = 0; i < 300; i++)); do
  line="$(grep -m1 '^tollgate listening public=' "$TMP/tollgate.out" 2>/dev/null || true)"
  if [[ "$line" =~ public=127\.0\.0\.1:([0-9]+) ]]; then TG_PORT="${BASH_REMATCH[1]}"; break; fi
  kill -0 "$TOLLGATE_PID" 2>/dev/null || die "tollgate exited before listening"
  sleep 0.1
done
[[ -n "$TG_PORT" ]] || die "tollgate printed no listening line within 30 s"
for f in leaf.pem leaf.key dev-ca.pem; do [[ -f "$DATA/tls/$f" ]] || die "tollgate did not generate tls/$f"; done
echo "loadtest: tollgate pid $TOLLGATE_PID on 127.0.0.1:$TG_PORT (spool on $(df -PT "$DATA" | awk 'NR==2 {print $2}'))"

# ---- nginx: same certificate and key, TLS + HTTP/1.1, return 204 ------------------------------------------
NG="$TMP/nginx"
mkdir -p "$NG"
write_nginx_conf() {
  cat >"$NG/nginx.conf" <<EOF
# Written by loadtest/run.sh. worker_processes auto = one worker per core.
daemon off;
worker_processes auto;
pid $NG/nginx.pid;
error_log $NG/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $NG/client_body;
  proxy_temp_path $NG/proxy;
  fastcgi_temp_path $NG/fastcgi;
  uwsgi_temp_path $NG/uwsgi;
  scgi_temp_path $NG/scgi;
  # Tollgate does not cap requests per connection; nginx's default of 1000 would add reconnects + handshakes.
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  server {
    listen 127.0.0.1:$1 ssl;
    ssl_certificate $DATA/tls/leaf.pem;
    ssl_certificate_key $DATA/tls/leaf.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location = /v1/events { return 204; }
    location / { return 404; }
  }
}
EOF
}
NG_PORT=""
for ((try = 0; try < 10; try++)); do
  [[ -z "$NG_PORT" ]] || break
  p=$((20000 + RANDOM % 40000))
  port_in_use "$p" && continue
  write_nginx_conf "$p"
  nginx -e "$NG/error.log" -p "$NG" -c "$NG/nginx.conf" &
  NGINX_PID=$!
  for ((i = 0; i < 100; i++)); do
    if port_in_use "$p"; then NG_PORT="$p"; break; fi
    kill -0 "$NGINX_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z "$NG_PORT" ]]; then stop_pid "$NGINX_PID" nginx; NGINX_PID=""; fi
done
[[ -n "$NG_PORT" ]] || die "nginx did not start (see its error log)"
echo "loadtest: nginx pid $NGINX_PID on 127.0.0.1:$NG_PORT ($(nginx -v 2>&1 | sed 's/.*version: //'), worker_processes auto = $(nproc))"

# ---- preflight: one request each, certificate verified against tollgate's dev CA, status must be 204 ------
preflight() { # preflight NAME PORT
  local status
  status="$({
    printf 'POST /v1/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n'
    printf 'Authorization: Bearer %s\r\n' "$LOADTEST_BEARER"
    printf 'Content-Length: %d\r\nConnection: close\r\n\r\n' "$(wc -c <"$BODY")"
    cat "$BODY"
  } | timeout 10 openssl s_client -quiet -connect "127.0.0.1:$2" -servername localhost \
        -CAfile "$DATA/tls/dev-ca.pem" -verify_return_error 2>/dev/null | head -n 1 | tr -d '\r')" || true
  [[ "$status" == "HTTP/1.1 204"* ]] || die "$1 preflight: expected 'HTTP/1.1 204', got '${status:-nothing}'"
  proto="$(timeout 10 openssl s_client -brief -connect "127.0.0.1:$2" -servername localhost </dev/null 2>&1 \
    | awk -F': ' '/^Protocol version/ {v=$2} /^Ciphersuite/ {c=$2} END {print v, c}')"
  echo "loadtest: $1 preflight: $status, $proto (certificate verified against tollgate's dev CA)"
}
preflight tollgate "$TG_PORT"
preflight nginx "$NG_PORT"

# ---- load -------------------------------------------------------------------------------------------------
cpu_ticks() { # cpu_ticks PID: user + system clock ticks of PID and its direct children (nginx workers)
  local p t=0
  for p in "$1" $(awk -v pp="$1" '$4 == pp {print $1}' /proc/[0-9]*/stat 2>/dev/null); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
run_wrk() { # run_wrk NAME PORT SERVER_PID -> prints wrk's report, leaves the LOADTEST line in $TMP/NAME.wrk
  local before after
  echo
  echo "==== $1: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency https://127.0.0.1:$2/v1/events"
  before="$(cpu_ticks "$3")"
  LOADTEST_BODY="$BODY" timeout --foreground $((DURATION + 60)) \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$LUA" "https://127.0.0.1:$2/v1/events" \
    | tee "$TMP/$1.wrk"
  after="$(cpu_ticks "$3")"
  grep -q '^LOADTEST ' "$TMP/$1.wrk" || die "$1: wrk printed no summary"
  echo "LOADTEST server_cpu_ticks=$((after - before))" >>"$TMP/$1.wrk"
}
field() { grep '^LOADTEST ' "$TMP/$1.wrk" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k {print $2}'; }
check_errors() { # any refused request or socket error makes the comparison meaningless
  local k v bad=0
  for k in status_errors connect_errors read_errors write_errors timeouts; do
    v="$(field "$1" "$k")"
    if (( v != 0 )); then echo "loadtest: $1: $k=$v" >&2; bad=1; fi
  done
  (( bad == 0 )) || die "$1 had errors under load (status_errors = responses >= 400)"
  (( $(field "$1" requests) > 0 )) || die "$1 answered no request"
}

# Both targets share the cores with wrk and with anything else running: a busy machine skews the ratio.
cpu_sample() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat; } # busy idle (ticks)
read -r b0 i0 < <(cpu_sample); sleep 1; read -r b1 i1 < <(cpu_sample)
busy_pct=$(( 100 * (b1 - b0) / (b1 - b0 + i1 - i0 + 1) ))
echo "loadtest: machine busy ${busy_pct}% in the second before the load (both servers idle)"
(( busy_pct < 15 )) || echo "loadtest: WARNING: something else is using the CPU; the numbers will be skewed" >&2
run_wrk tollgate "$TG_PORT" "$TOLLGATE_PID"
check_errors tollgate

# Stop tollgate (SIGTERM drains in flight and fsyncs), then count what it stored: every 204 wrk counted must be
# a record; requests still in flight when wrk stopped may add up to CONNECTIONS more.
stop_pid "$TOLLGATE_PID" tollgate
TOLLGATE_PID=""
tg_requests="$(field tollgate requests)"
# Stored = what the file sink delivered + what is still in the spool behind its cursor.
cat "$DATA"/out/*/*/*.ndjson >"$TMP/spool.jsonl" 2>/dev/null || true
delivered="$(wc -l <"$TMP/spool.jsonl")"
behind="$("$BIN" spool status -c "$TMP/tollgate.toml" 2>/dev/null \
  | awk '/^consumer file / {for (i = 1; i < NF; i++) if ($i == "lag_records") print $(i + 1)}')"
stored=$(( delivered + ${behind:-0} ))
"$BIN" spool dump -c "$TMP/tollgate.toml" >>"$TMP/spool.jsonl"
echo "loadtest: tollgate stored $stored records ($delivered delivered by the file sink, ${behind:-0} still spooled) for $tg_requests answered requests (+1 preflight)"
(( stored >= tg_requests + 1 )) || die "stored $stored records, fewer than the $((tg_requests + 1)) requests answered 204"
(( stored <= tg_requests + 1 + CONNECTIONS )) || die "stored $stored records, more than requests sent could explain"
# What was stored is the minimized event: e-mail hashed, no e-mail address or street.
head -n 1 "$TMP/spool.jsonl" | grep -q '"email_hash":"k1:' || die "the first stored record has no customer.email_hash"
! grep -q -m1 -e 'Ann@Example.com' -e '1 Main St' "$TMP/spool.jsonl" || die "stored records hold PII they must not"
rm -f "$TMP/spool.jsonl"

run_wrk nginx "$NG_PORT" "$NGINX_PID"
check_errors nginx
stop_pid "$NGINX_PID" nginx
NGINX_PID=""

# ---- summary ----------------------------------------------------------------------------------------------
HZ="$(getconf CLK_TCK)"
summary_line() { # NAME
  awk -v n="$1" -v r="$(field "$1" requests)" -v d="$(field "$1" duration_us)" \
      -v p50="$(field "$1" p50_us)" -v p99="$(field "$1" p99_us)" -v mx="$(field "$1" max_us)" \
      -v cpu="$(field "$1" server_cpu_ticks)" -v hz="$HZ" \
    'BEGIN { printf "%-9s %10.0f %9.2f %9.2f %9.2f %10d %11.0f%%\n",
             n, r / (d / 1e6), p50 / 1000, p99 / 1000, mx / 1000, r, 100 * (cpu / hz) / (d / 1e6) }'
}
rps() { awk -v r="$(field "$1" requests)" -v d="$(field "$1" duration_us)" 'BEGIN { printf "%.1f", r / (d / 1e6) }'; }
echo
echo "==== summary: $(nproc) cores, wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, POST /v1/events ($(wc -c <"$BODY") B JSON), HTTP/1.1"
printf '%-9s %10s %9s %9s %9s %10s %12s\n' target 'req/s' 'p50 ms' 'p99 ms' 'max ms' requests 'server CPU'
summary_line tollgate
summary_line nginx
awk -v t="$(rps tollgate)" -v n="$(rps nginx)" \
  'BEGIN { printf "ratio tollgate/nginx (throughput): %.3f\n", t / n }'
echo "(tollgate: TLS + parse + validate + minimize + HMAC + spool fsync before 204; nginx: TLS + return 204;"
echo " server CPU = the server's user+system CPU time over the run, 100% = one core, $(nproc) cores shared with wrk)"
