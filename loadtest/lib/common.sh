# Shared helpers for loadtest/run.sh: messages, PIDs this run started (and only those), CPU and memory of a
# server process tree, free ports. Sourced, not run.

log() { echo "loadtest: $*" >&2; }
die() { echo "loadtest: FAIL: $*" >&2; exit 1; }
is_int_in() { [[ "$1" =~ ^[0-9]+$ ]] && (( $1 >= $2 && $1 <= $3 )); }

# ---- processes started by this run ------------------------------------------------------------------------
OWN_PIDS=()
own() { OWN_PIDS+=("$1"); }
disown_pid() { # drop PID from the list once it has been stopped
  local p keep=()
  for p in "${OWN_PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
  OWN_PIDS=("${keep[@]}")
}
stop_pid() { # stop_pid PID NAME: SIGTERM, wait up to 10 s, then SIGKILL; only PIDs this run started
  local pid="$1" name="$2" i
  [[ -n "$pid" ]] || return 0
  disown_pid "$pid"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) ignored SIGTERM for 10 s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}
stop_all_own() {
  local p
  for p in "${OWN_PIDS[@]}"; do stop_pid "$p" "pid $p"; done
}

# ---- measuring a server -----------------------------------------------------------------------------------
children() { awk -v pp="$1" '$4 == pp {print $1}' /proc/[0-9]*/stat 2>/dev/null || true; }
tree() { echo "$1"; children "$1"; } # the server and its direct children (nginx master + workers)
cpu_ticks() { # user + system clock ticks of PID's tree; /proc/PID/stat of a process covers all its threads
  local p t=0 v
  for p in $(tree "$1"); do
    v="$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || true)"
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
HZ="$(getconf CLK_TCK)"
mem_kib() { # mem_kib PID: "PSS RSS" in KiB summed over the tree (Pss shares pages between nginx's processes)
  local p pss=0 rss=0 a b
  for p in $(tree "$1"); do
    a="$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true)"
    b="$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)"
    pss=$((pss + ${a:-0})); rss=$((rss + ${b:-0}))
  done
  echo "$pss $rss"
}

# ---- ports and the machine --------------------------------------------------------------------------------
port_in_use() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p i
  for ((i = 0; i < 50; i++)); do
    p=$((20000 + RANDOM % 40000))
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  die "no free port found"
}
busy_pct() { # share of the CPU used by anything during one second (servers idle)
  local b0 i0 b1 i1
  read -r b0 i0 < <(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat)
  sleep 1
  read -r b1 i1 < <(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat)
  echo $(( 100 * (b1 - b0) / (b1 - b0 + i1 - i0 + 1) ))
}
kv() { # kv FILE PREFIX KEY: the value of KEY=... on FILE's line starting with PREFIX
  grep "^$2 " "$1" | tail -n 1 | tr ' ' '\n' | awk -F= -v k="$3" '$1 == k {print $2}'
}
