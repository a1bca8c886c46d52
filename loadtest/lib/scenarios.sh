# The scenarios of loadtest/run.sh. Every scenario runs Tollgate and nginx alternately, A B A B (ROUNDS
# rounds), each run on a freshly started server; the server's CPU time (user + system, all threads, nginx
# master + workers) is read around the client. Sourced, not run.

SRV_PID=""
SRV_PORT=""

# run_pair SCN TARGET ROUND SERVER_ARGS CLIENT_FN CLIENT_ARGS...: one measured run of one target.
#   SERVER_ARGS: "CPUS WORKERS NGINX_MODE" (CPUS/WORKERS "-" for the default)
run_one() {
  local scn="$1" target="$2" round="$3" cpus workers mode slack before after out
  read -r cpus workers mode slack <<<"$4"
  [[ "$cpus" == - ]] && cpus=""
  [[ "$workers" == - ]] && workers=""
  shift 4
  out="$TMP/out/$scn-$target-$round.txt"
  SCN="$scn"
  if [[ "$target" == tollgate ]]; then
    start_tollgate "$scn-$round" "$cpus" "$workers"
    SRV_PID="$TG_PID" SRV_PORT="$TG_PORT"
    note_cmd "tollgate: ${workers:+TOKIO_WORKER_THREADS=$workers }${cpus:+taskset -c $cpus }tollgate run -c tollgate.toml"
  else
    start_nginx "$mode" "$cpus" "${workers:-auto}"
    SRV_PID="$NG_PID" SRV_PORT="$NG_PORT"
    note_cmd "nginx: ${cpus:+taskset -c $cpus }nginx -p DIR -c nginx.conf (loadtest/nginx.conf.in: worker_processes ${workers:-auto}, location /v1/events: $( [[ "$mode" == proxy ]] && echo 'proxy_pass http://collector (keepalive 64)' || echo 'return 204'))"
  fi
  before="$(cpu_ticks "$SRV_PID")"
  "$@" "$out"
  after="$(cpu_ticks "$SRV_PID")"
  SPOOL_NOTE=""
  if [[ "$target" == tollgate ]]; then stop_tollgate "$C_OK" "$slack"; else stop_nginx; fi
  echo "RESULT scn=$scn target=$target round=$round ok=$C_OK dur_us=$C_DUR_US cpu_ticks=$((after - before)) hz=$HZ $C_EXTRA" \
    >>"$TMP/results.txt"
  log "$scn round $round $target: $(summary_of "$C_OK" "$C_DUR_US" $((after - before)))${SPOOL_NOTE:+; $SPOOL_NOTE}"
}
summary_of() { awk -v n="$1" -v d="$2" -v c="$3" -v hz="$HZ" 'BEGIN {
  if (d > 0) printf "%d in %.1f s = %.0f/s, ", n, d / 1e6, n / (d / 1e6); else printf "%d, ", n
  printf "server CPU %.1f µs each", c * 1e6 / hz / (n > 0 ? n : 1) }'; }

# alternate SCN SERVER_ARGS_TOLLGATE SERVER_ARGS_NGINX CLIENT_FN CLIENT_ARGS... (the client's FILE comes last)
alternate() {
  local scn="$1" tg="$2" ng="$3" r
  shift 3
  log "---- scenario $scn: $SCN_TITLE"
  echo "TITLE scn=$scn $SCN_TITLE" >>"$TMP/commands.txt"
  for ((r = 1; r <= ROUNDS; r++)); do
    run_one "$scn" tollgate "$r" "$tg" "$@"
    run_one "$scn" nginx "$r" "$ng" "$@"
  done
}
wrap() { local fn="$1" f; shift; f="${!#}"; "$fn" "$f" "${@:1:$#-1}"; } # move FILE (last) to the front

# Client functions take FILE first; run_one appends FILE last, so each scenario passes `wrap CLIENT args`.
scenario_1() {
  SCN_TITLE="keep-alive HTTP/1.1, 32 connections (wrk)"
  alternate 1a "- - - 32" "- - return 0" wrap client_wrk 32 2
  SCN_TITLE="keep-alive HTTP/1.1, 128 connections (wrk)"
  alternate 1b "- - - 128" "- - return 0" wrap client_wrk 128 2
}
scenario_2() {
  SCN_TITLE="HTTP/2 multiplexed, 64 connections x 10 streams (h2load)"
  alternate 2 "- - - 640" "- - return 0" wrap client_h2load 64 10 2
}
scenario_3() {
  SCN_TITLE="one core each: server on CPU 1 (1 tokio worker / 1 nginx worker), wrk on CPU 0, 64 connections"
  alternate 3 "1 1 - 64" "1 1 return 0" wrap client_wrk 64 1 0
}
scenario_4() {
  SCN_TITLE="new connection per request, full TLS 1.3 handshakes (no resumption)"
  alternate 4a "- - - 0" "- - return 0" wrap client_handshake 1.3 full
  SCN_TITLE="new connection per request, resumed TLS 1.3 sessions"
  alternate 4b "- - - 0" "- - return 0" wrap client_handshake 1.3 resume
  SCN_TITLE="new connection per request, resumed TLS 1.2 sessions"
  alternate 4c "- - - 0" "- - return 0" wrap client_handshake 1.2 resume
}
scenario_5() {
  SCN_TITLE="$IDLE_N idle keep-alive TLS connections (HTTP/1.1, one request each): memory per connection"
  alternate 5 "- - - 0" "- - return 0" wrap client_idle "$IDLE_N"
}
scenario_6() {
  local rate per_client
  nginx_h2_max
  local nginx_max="$NGINX_H2_MAX"
  rate=$((nginx_max / 2))
  per_client=$(( (rate + LAT_CONNS - 1) / LAT_CONNS ))
  (( per_client >= 1 )) || per_client=1
  SCN_TITLE="latency at a fixed offered load: h2 (h2load --rps), $((per_client * LAT_CONNS)) req/s = 50% of nginx's h2 max ($nginx_max req/s)"
  echo "META offered_rps=$((per_client * LAT_CONNS)) nginx_h2_max=$nginx_max" >>"$TMP/meta.txt"
  alternate 6 "- - - $((LAT_CONNS * 10))" "- - return 0" wrap client_latency "$per_client"
}
scenario_7() {
  SCN_TITLE="nginx proxy_pass to a keep-alive upstream (204) vs Tollgate with its file sink, wrk 128 connections"
  alternate 7 "- - - 128" "- - proxy 0" wrap client_wrk 128 2
}

client_latency() { # client_latency FILE RPS_PER_CLIENT: h2load at a fixed rate; percentiles from its log
  local f="$1" log="$TMP/out/latency.log"
  client_h2load "$f" "$LAT_CONNS" 10 1 --rps="$2" --log-file="$log"
  note_cmd "client: python3 loadtest/latency.py latency.log"
  python3 "$ROOT/loadtest/latency.py" "$log" >>"$f"
  (( $(kv "$f" LATENCY bad) == 0 )) || die "latency: $(kv "$f" LATENCY bad) requests not answered 2xx"
  C_EXTRA="$C_EXTRA $(grep '^LATENCY ' "$f" | cut -d' ' -f2-)"
  rm -f "$log"
}

# nginx's h2 maximum from scenario 2 of this run (mean of its rounds); without it, one calibration run.
nginx_h2_max() { # sets NGINX_H2_MAX (req/s)
  local v
  v="$(awk '/^RESULT scn=2 target=nginx / {
          for (i = 1; i <= NF; i++) { split($i, kv, "="); m[kv[1]] = kv[2] }
          s += m["ok"] / (m["dur_us"] / 1e6); n++ } END { if (n) printf "%d", s / n }' "$TMP/results.txt")"
  if [[ -z "$v" ]]; then
    log "scenario 6: no scenario 2 in this run; measuring nginx's h2 maximum first"
    start_nginx return
    SRV_PID="$NG_PID" SRV_PORT="$NG_PORT" SCN=6-calibration
    client_h2load "$TMP/out/6-calibration.txt" 64 10 2
    stop_nginx
    v="$(awk -v n="$C_OK" -v d="$C_DUR_US" 'BEGIN { printf "%d", n / (d / 1e6) }')"
  fi
  NGINX_H2_MAX="$v"
}
