# Tollgate for loadtest/run.sh: its config, start (optionally pinned, with N tokio workers), stop, and the
# spool checks after each run. Sourced, not run; needs BIN, TMP, BODY from run.sh.

TG_PID=""
TG_PORT=""
TG_RUN=""

write_tollgate_conf() { # write_tollgate_conf DATA_DIR
  cat >"$1/tollgate.toml" <<EOF2
# Written by loadtest/run.sh; the shape of config/tollgate.toml, redirect and admin listeners off. Every run
# gets a fresh data dir (spool, file sink output); certificate and keys are shared by all runs (and nginx).
data_dir = "$1"

[listen]
public = "127.0.0.1:0"

[tls]
cert = "$TMP/tls/leaf.pem"
key = "$TMP/tls/leaf.key"
dev_self_signed = true
min_version = "1.2"

[limits]
max_body_bytes = 65536
max_events = 100
max_depth = 16
max_string_bytes = 2048
max_object_keys = 64
# Scenario 5 holds up to $IDLE_N idle connections from one address.
max_connections = $((IDLE_N + 4096))
max_header_count = 64
max_header_bytes = 16384
h2_max_concurrent_streams = 100

[timeouts]
tls_handshake_ms = 10000
# idle_ms and keepalive_idle_ms: long enough that no idle connection of scenario 5 is closed while it is
# measured.
header_read_ms = 10000
body_read_ms = 10000
idle_ms = 600000
keepalive_idle_ms = 600000
shutdown_grace_ms = 30000

[guard.connections]
max_per_address = $((IDLE_N + 4096))

[spool]
dir = "spool"
segment_bytes = 67108864
max_bytes = 4294967296
commit_window_us = ${COMMIT_WINDOW_US:-100}
max_batch_bytes = 4194304
queue_depth = 1024
active_key = "s1"
[[spool.keys]]
id = "s1"
file = "$TMP/keys/spool-s1.key"
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

# Bans and behaviour windows on; the event bound is raised so the one loopback client is never banned for its
# (intended) impossible rate.
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
file = "$TMP/keys/demo-k1.key"
generate_if_missing = true
EOF2
}

start_tollgate() { # start_tollgate TAG [CPUS] [WORKERS]: fresh data dir $TMP/tg-TAG, sets TG_PID TG_PORT TG_RUN
  local cpus="${2:-}" workers="${3:-}" i line
  TG_RUN="$TMP/tg-$1"
  mkdir -p "$TG_RUN"
  write_tollgate_conf "$TG_RUN"
  env -u TOKIO_WORKER_THREADS ${workers:+TOKIO_WORKER_THREADS=$workers} ${cpus:+taskset -c $cpus} \
    "$BIN" run -c "$TG_RUN/tollgate.toml" >"$TG_RUN/out.log" 2>"$TG_RUN/err.log" &
  TG_PID=$!
  own "$TG_PID"
  TG_PORT=""
  for ((i = 0; i < 300; i++)); do
    line="$(grep -m1 '^tollgate listening public=' "$TG_RUN/out.log" 2>/dev/null || true)"
    if [[ "$line" =~ public=127\.0\.0\.1:([0-9]+) ]]; then TG_PORT="${BASH_REMATCH[1]}"; break; fi
    kill -0 "$TG_PID" 2>/dev/null || { tail -n 20 "$TG_RUN/err.log" >&2; die "tollgate exited before listening"; }
    sleep 0.05
  done
  [[ -n "$TG_PORT" ]] || die "tollgate printed no listening line within 15 s"
  # TOKIO_WORKER_THREADS is read by tokio's multi-thread builder (tokio's loom/std/mod.rs); pinned with taskset,
  # its default (available_parallelism, which follows the affinity mask) would be 1 as well. Threads cannot
  # tell: the blocking pool's threads carry the same name as the workers.
}

# stop_tollgate OK SLACK: SIGTERM (drains in flight, fsyncs), then the stored records must cover every 2xx the
# client counted (OK), with at most SLACK more (requests in flight when the client stopped); the first record
# is minimized and no record holds the sample's PII. The run's data dir is removed afterwards.
stop_tollgate() {
  local ok="$1" slack="$2" delivered=0 behind stored bad files
  stop_pid "$TG_PID" tollgate
  TG_PID=""
  shopt -s nullglob
  files=("$TG_RUN"/out/*/*/*.ndjson)
  shopt -u nullglob
  (( ${#files[@]} == 0 )) || delivered="$(cat "${files[@]}" | wc -l)"
  behind="$("$BIN" spool status -c "$TG_RUN/tollgate.toml" 2>/dev/null \
    | awk '/^consumer file / {for (i = 1; i < NF; i++) if ($i == "lag_records") print $(i + 1)}')"
  stored=$((delivered + ${behind:-0}))
  (( stored >= ok )) || die "tollgate stored $stored records, fewer than the $ok requests answered 2xx"
  (( stored <= ok + slack )) || die "tollgate stored $stored records, more than $ok answered + $slack in flight"
  if (( ${#files[@]} )); then
    head -n 1 "${files[0]}" | grep -q '"email_hash":"k1:' || die "the first stored record has no customer.email_hash"
    ! grep -q -m1 -e 'Ann@Example.com' -e '1 Main St' "${files[@]}" || die "delivered records hold PII they must not"
  fi
  if (( ${behind:-0} > 0 )); then # records still in the (encrypted) spool, decrypted by `spool dump`
    bad="$({ "$BIN" spool dump -c "$TG_RUN/tollgate.toml" || echo DUMP_FAILED; } \
      | grep -c -e 'Ann@Example.com' -e '1 Main St' -e DUMP_FAILED || true)"
    (( bad == 0 )) || die "spooled records hold PII they must not (or spool dump failed)"
  fi
  SPOOL_NOTE="stored $stored ($delivered delivered, ${behind:-0} spooled) for $ok answered"
  rm -rf "$TG_RUN"
}
