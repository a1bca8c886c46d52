# Load clients for loadtest/run.sh. Each runs bounded by `timeout`, writes its output to FILE, fails the run on
# any error, and sets C_OK (requests answered 2xx, or handshakes), C_DUR_US (the client's measured duration)
# and C_EXTRA (more key=value pairs for the report). SRV_PORT is the server under test. Sourced, not run.

C_OK=0
C_DUR_US=0
C_EXTRA=""
note_cmd() { local t="$*"; echo "CMD scn=$SCN ${t//$TMP\/out\//}" >>"$TMP/commands.txt"; }

client_wrk() { # client_wrk FILE CONNS THREADS [CPUS]
  local f="$1" k v
  note_cmd "client: ${4:+taskset -c $4 }wrk -t$3 -c$2 -d${DURATION}s --latency -s loadtest/events.lua https://127.0.0.1:PORT/v1/events"
  LOADTEST_BODY="$BODY" timeout --foreground $((DURATION + 30)) ${4:+taskset -c $4} \
    wrk -t"$3" -c"$2" -d"${DURATION}s" --latency -s "$LUA" "https://127.0.0.1:$SRV_PORT/v1/events" >"$f" 2>&1 \
    || { cat "$f" >&2; die "wrk failed"; }
  grep -q '^LOADTEST ' "$f" || { cat "$f" >&2; die "wrk printed no summary"; }
  for k in status_errors connect_errors read_errors write_errors timeouts; do
    v="$(kv "$f" LOADTEST "$k")"
    (( v == 0 )) || { cat "$f" >&2; die "wrk: $k=$v (every response >= 400 and every socket error counts)"; }
  done
  C_OK="$(kv "$f" LOADTEST requests)"
  C_DUR_US="$(kv "$f" LOADTEST duration_us)"
  C_EXTRA="p50_us=$(kv "$f" LOADTEST p50_us) p99_us=$(kv "$f" LOADTEST p99_us)"
  (( C_OK > 0 )) || die "wrk: no request answered"
}

client_h2load() { # client_h2load FILE CONNS STREAMS THREADS [more h2load args]
  local f="$1" c="$2" m="$3" t="$4" line total ok failed errored timeouts s4 s5 secs
  shift 4
  note_cmd "client: h2load -t$t -c$c -m$m -D $DURATION -d tests/fixtures/sample_event.json -H 'content-type: application/json' -H 'authorization: Bearer SECRET' ${*:+$* }https://127.0.0.1:PORT/v1/events"
  timeout --foreground $((DURATION + 30)) h2load -t"$t" -c"$c" -m"$m" -D "$DURATION" -d "$BODY" \
    -H 'content-type: application/json' -H "authorization: Bearer $LOADTEST_BEARER" "$@" \
    "https://127.0.0.1:$SRV_PORT/v1/events" >"$f" 2>&1 || { cat "$f" >&2; die "h2load failed"; }
  grep -q '^Application protocol: h2$' "$f" || { cat "$f" >&2; die "h2load did not negotiate h2 (ALPN)"; }
  line="$(grep '^requests: ' "$f")"
  [[ "$line" =~ ([0-9]+)\ total.*\ ([0-9]+)\ succeeded,\ ([0-9]+)\ failed,\ ([0-9]+)\ errored,\ ([0-9]+)\ timeout ]] \
    || { cat "$f" >&2; die "h2load: no request summary"; }
  total="${BASH_REMATCH[1]}" ok="${BASH_REMATCH[2]}" failed="${BASH_REMATCH[3]}"
  errored="${BASH_REMATCH[4]}" timeouts="${BASH_REMATCH[5]}"
  line="$(grep '^status codes: ' "$f")"
  [[ "$line" =~ ([0-9]+)\ 4xx,\ ([0-9]+)\ 5xx ]] || die "h2load: no status summary"
  s4="${BASH_REMATCH[1]}" s5="${BASH_REMATCH[2]}"
  (( s4 == 0 && s5 == 0 && errored == 0 && timeouts == 0 )) \
    || { cat "$f" >&2; die "h2load: 4xx=$s4 5xx=$s5 errored=$errored timeout=$timeouts"; }
  # With -D, streams still open at the deadline count as failed: at most one per stream slot.
  (( failed <= c * m )) || { cat "$f" >&2; die "h2load: $failed failed requests (more than in flight)"; }
  secs="$(awk '/^finished in / {sub(/s,$/, "", $3); print $3}' "$f")"
  C_OK="$ok"
  C_DUR_US="$(awk -v s="$secs" 'BEGIN { printf "%d", s * 1e6 }')"
  C_EXTRA="sent=$total"
  (( C_OK > 0 )) || die "h2load: no request answered"
}

client_handshake() { # client_handshake FILE TLS(1.2|1.3) full|resume
  local f="$1" tls="$2" mode="$3" n ok reused errors flag=""
  [[ "$mode" == resume ]] && flag="--resume"
  note_cmd "client: python3 loadtest/handshake.py --port PORT --seconds $DURATION --procs $HS_PROCS --tls $tls${flag:+ $flag} --body tests/fixtures/sample_event.json --bearer SECRET"
  timeout --foreground $((DURATION + 60)) python3 "$ROOT/loadtest/handshake.py" --port "$SRV_PORT" \
    --seconds "$DURATION" --procs "$HS_PROCS" --tls "$tls" $flag --body "$BODY" --bearer "$LOADTEST_BEARER" \
    >"$f" 2>&1 || { cat "$f" >&2; die "handshake.py failed"; }
  n="$(kv "$f" HANDSHAKE connections)"; ok="$(kv "$f" HANDSHAKE ok)"
  reused="$(kv "$f" HANDSHAKE reused)"; errors="$(kv "$f" HANDSHAKE errors)"
  [[ -n "$n" ]] || { cat "$f" >&2; die "handshake.py printed no summary"; }
  (( errors == 0 && ok == n && n > 0 )) || { cat "$f" >&2; die "handshake.py: $errors errors, $ok of $n answered 2xx"; }
  [[ "$(kv "$f" HANDSHAKE version)" == "TLSv$tls" ]] || die "handshake.py: negotiated $(kv "$f" HANDSHAKE version), not TLSv$tls"
  if [[ "$mode" == full ]]; then
    (( reused == 0 )) || die "handshake.py: $reused of $n handshakes resumed, expected none"
  else
    # Each process's first connection is a full handshake; every later one must resume.
    (( reused >= n - HS_PROCS )) || die "handshake.py: only $reused of $n handshakes resumed"
  fi
  C_OK="$n"
  C_DUR_US="$(kv "$f" HANDSHAKE duration_us)"
  C_EXTRA="reused=$reused"
}

client_idle() { # client_idle FILE N: opens N idle connections; reads server memory while they are open
  local f="$1" n="$2" pid i before after
  note_cmd "client: python3 loadtest/idle.py --port PORT --n $n --procs 2 --concurrency 200 --hold 3 --body tests/fixtures/sample_event.json --bearer SECRET"
  read -r before _ < <(mem_kib "$SRV_PID")
  read -r _ rss_before < <(mem_kib "$SRV_PID")
  timeout --foreground 300 python3 "$ROOT/loadtest/idle.py" --port "$SRV_PORT" --n "$n" --procs 2 \
    --concurrency 200 --hold 3 --body "$BODY" --bearer "$LOADTEST_BEARER" >"$f" 2>&1 &
  pid=$!
  own "$pid"
  for ((i = 0; i < 2400; i++)); do
    grep -q '^OPEN ' "$f" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  grep -q '^OPEN ' "$f" || { stop_pid "$pid" idle.py; cat "$f" >&2; die "idle.py did not open its connections"; }
  sleep 1
  read -r after rss_after < <(mem_kib "$SRV_PID")
  wait "$pid" || { disown_pid "$pid"; cat "$f" >&2; die "idle.py failed"; }
  disown_pid "$pid"
  (( $(kv "$f" IDLE ok) == n )) || { cat "$f" >&2; die "idle.py: only $(kv "$f" IDLE ok) of $n connections answered 2xx"; }
  (( $(kv "$f" IDLE still_open) == n )) || { cat "$f" >&2; die "idle.py: the server closed idle connections"; }
  C_OK="$n"
  C_DUR_US=0
  C_EXTRA="pss_before_kib=$before pss_after_kib=$after rss_before_kib=$rss_before rss_after_kib=$rss_after"
}
