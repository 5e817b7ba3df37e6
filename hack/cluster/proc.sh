# shellcheck shell=bash
# Start, stop and wait for the cluster's processes. Each component gets a pid file
# in $PIDS and one log in $LOGS; nothing is found by process name, so other
# containerd or kubelet processes on the machine are never touched.

# The pid in a pid file, if that process is alive and still runs the same binary
# (a stale file may name a recycled pid).
live_pid() {  # name
  local f="$PIDS/$1.pid" pid exe
  [ -f "$f" ] || return 1
  read -r pid exe < "$f" || return 1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ] || return 1
  echo "$pid"
}

start_proc() {  # name binary args...
  local name="$1" bin="$2"; shift 2
  mkdir -p "$PIDS" "$LOGS"
  if live_pid "$name" >/dev/null; then log "$name already running"; return 0; fi
  echo "=== $(date -u +%FT%TZ) start: $bin $*" >> "$LOGS/$name.log"
  # setsid: the component must outlive `make`; it is stopped by cluster-down only.
  setsid "$bin" "$@" >> "$LOGS/$name.log" 2>&1 < /dev/null &
  local pid=$! exe i
  exe="$(readlink -f "$bin")"
  # Until the fork has exec'd, /proc/<pid>/exe is still bash or setsid; wait for
  # the real binary so live_pid cannot mistake that window for a crash.
  for (( i=0; i<100; i++ )); do
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ] && break
    [ -d "/proc/$pid" ] || break
    sleep 0.02
  done
  echo "$pid $exe" > "$PIDS/$name.pid"
  log "Started $name (pid $pid, log $LOGS/$name.log)"
}

stop_proc() {  # name [timeout-seconds]
  local name="$1" t="${2:-20}" pid i
  pid="$(live_pid "$name")" || { rm -f "$PIDS/$name.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for (( i=0; i<t*5; i++ )); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
  if [ -d "/proc/$pid" ]; then
    log "$name (pid $pid) ignored SIGTERM for ${t}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDS/$name.pid"
  log "Stopped $name"
}

# Stop several at once: SIGTERM to all, then wait for all (shutdowns overlap).
stop_procs() {  # names...
  local name pid pids=() i left
  for name in "$@"; do
    pid="$(live_pid "$name")" || { rm -f "$PIDS/$name.pid"; continue; }
    kill -TERM "$pid" 2>/dev/null || true; pids+=("$name:$pid")
  done
  for (( i=0; i<100; i++ )); do
    left=0; for p in "${pids[@]}"; do [ -d "/proc/${p#*:}" ] && left=1; done
    [ $left = 0 ] && break; sleep 0.2
  done
  for p in "${pids[@]}"; do
    if [ -d "/proc/${p#*:}" ]; then
      log "${p%%:*} (pid ${p#*:}) ignored SIGTERM for 20s; killing it"
      kill -KILL "${p#*:}" 2>/dev/null || true
    fi
    rm -f "$PIDS/${p%%:*}.pid"; log "Stopped ${p%%:*}"
  done
}

# Poll until a command succeeds; on timeout show the component's log tail and fail,
# so a component that cannot start is reported instead of waited on forever.
wait_for() {  # name timeout-seconds command...
  local name="$1" t="$2"; shift 2
  local deadline=$(( $(date +%s) + t ))
  until "$@" >/dev/null 2>&1; do
    if [ -f "$PIDS/$name.pid" ] && ! live_pid "$name" >/dev/null; then
      tail -n 25 "$LOGS/$name.log" >&2 2>/dev/null || true
      die "$name exited during startup; its log is $LOGS/$name.log (last lines above)"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      tail -n 25 "$LOGS/$name.log" >&2 2>/dev/null || true
      die "$name was not ready after ${t}s; its log is $LOGS/$name.log (last lines above)"
    fi
    sleep 0.5
  done
}

# Fail early, naming the holder, when a port we need is taken by someone else.
check_port_free() {  # port what
  local line
  line="$(ss -Hltnp "sport = :$1" 2>/dev/null | head -n1)"
  [ -z "$line" ] && return 0
  local holder; holder="$(sed -nE 's/.*users:\(\("([^"]+)",pid=([0-9]+).*/\1 (pid \2)/p' <<<"$line")"
  die "port $1 ($2) is already in use by ${holder:-another process}. Stop it, or choose another port, e.g. TETHER_$(tr 'a-z -' 'A-Z__' <<<"$2")_PORT=<free port> make cluster-up"
}

# Write stdin to a config file only when it differs; succeed when the file changed,
# so a caller restarts a running component only for a real change.
update_file() {  # path
  local tmp="$1.new"
  cat > "$tmp"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; return 1; fi
  mv -f "$tmp" "$1"
}
