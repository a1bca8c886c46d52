# nginx for loadtest/run.sh: config from loadtest/nginx.conf.in, start (optionally pinned, N workers), stop.
# Sourced, not run; needs ROOT, TMP from run.sh.

NG_PID=""
NG_PORT=""

start_nginx() { # start_nginx MODE(return|proxy) [CPUS] [WORKERS]: sets NG_PID NG_PORT
  local mode="$1" cpus="${2:-}" workers="${3:-auto}" dir="$TMP/nginx" try i up loc
  mkdir -p "$dir"
  if [[ "$mode" == proxy ]]; then
    loc='proxy_pass http://collector; proxy_http_version 1.1; proxy_set_header Connection "";'
  else
    loc='return 204;'
  fi
  NG_PORT=""
  for ((try = 0; try < 5; try++)); do
    NG_PORT="$(free_port)"
    up="$(free_port)"
    [[ "$up" != "$NG_PORT" ]] || continue
    sed -e "s|@WORKERS@|$workers|; s|@DIR@|$dir|g; s|@PORT@|$NG_PORT|; s|@UPSTREAM_PORT@|$up|g" \
        -e "s|@CERT@|$TMP/tls/leaf.pem|; s|@KEY@|$TMP/tls/leaf.key|; s|@LOCATION@|$loc|" \
        -e "s|@NOFILE@|$(ulimit -n)|; s|@WORKER_CONNECTIONS@|$((IDLE_N + 4096))|" \
        "$ROOT/loadtest/nginx.conf.in" >"$dir/nginx.conf"
    ${cpus:+taskset -c $cpus} nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" 2>>"$dir/error.log" &
    NG_PID=$!
    own "$NG_PID"
    for ((i = 0; i < 200; i++)); do
      if port_in_use "$NG_PORT" && [[ -n "$(children "$NG_PID")" ]]; then return 0; fi
      kill -0 "$NG_PID" 2>/dev/null || break
      sleep 0.05
    done
    stop_pid "$NG_PID" nginx
    NG_PID=""
  done
  tail -n 20 "$dir/error.log" >&2
  die "nginx did not start (see its error log above)"
}

stop_nginx() {
  stop_pid "$NG_PID" nginx
  NG_PID=""
}
