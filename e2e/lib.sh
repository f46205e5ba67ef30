# e2e/lib.sh: what the e2e and bench scripts share, sourced (`. e2e/lib.sh`), never run.
#
# Every process started with `start` is remembered by PID, and every directory made with
# `temp_dir` by path; on exit (also on Ctrl-C or SIGTERM) the trap set here stops those
# processes by PID and removes those directories. Scripts add no EXIT trap of their own.
#
#   start LOG CMD [ARG..]       CMD in the background, output to LOG (`-`: to ours); its PID
#                               in $started
#   stop PID                    SIGTERM, then wait for it
#   reap PID                    wait for it to end by itself; returns its exit status
#   temp_dir VAR                a new temporary directory, its path in $VAR
#   free_port                   prints a TCP port nothing listens on now (127.0.0.1)
#   wait_port PORT [PID]        until something accepts on 127.0.0.1:PORT
#   wait_line LOG REGEX [PID]   until LOG has a match of REGEX (grep -o), e.g. the address or
#                               URL a server prints; prints the first match
# The waits give up after $E2E_WAIT seconds (default 10), or when process PID has exited,
# and then print LOG (wait_line) to standard error and return 1.

e2e_pids=()
e2e_dirs=()
started=

start() {  # start LOG CMD [ARG..]
  local log=$1
  shift
  # A simple command in the background is forked and exec'd: $! is CMD's own PID (what
  # /proc is read for), also through `nice`, `taskset` and `env`, which exec in turn.
  if [ "$log" = - ]; then
    "$@" &
  else
    # Emptied here, not only by the redirection below (which the child does, later), so
    # that a wait_line right after this never reads what an earlier process wrote.
    : >"$log"
    "$@" >"$log" 2>&1 &
  fi
  started=$!
  e2e_pids+=("$started")
}

stop() {  # stop PID
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  e2e_forget "$1"
}

reap() {  # reap PID
  local rc=0
  wait "$1" || rc=$?
  e2e_forget "$1"
  return "$rc"
}

# e2e_forget PID: once a process is waited for, its PID may be reused: the trap must not
# signal it.
e2e_forget() {
  local keep=() pid
  for pid in "${e2e_pids[@]}"; do [ "$pid" = "$1" ] || keep+=("$pid"); done
  e2e_pids=("${keep[@]}")
}

temp_dir() {  # temp_dir VAR
  local dir
  dir=$(mktemp -d)
  e2e_dirs+=("$dir")
  printf -v "$1" '%s' "$dir"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# e2e_waiting PID: false once the deadline ($e2e_deadline) passed or PID exited.
e2e_waiting() {
  [ "$SECONDS" -lt "$e2e_deadline" ] && { [ -z "$1" ] || kill -0 "$1" 2>/dev/null; }
}

wait_port() {  # wait_port PORT [PID]
  e2e_deadline=$((SECONDS + ${E2E_WAIT:-10}))
  while e2e_waiting "${2:-}"; do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}

wait_line() {  # wait_line LOG REGEX [PID]
  local match
  e2e_deadline=$((SECONDS + ${E2E_WAIT:-10}))
  while e2e_waiting "${3:-}"; do
    match=$(grep -o -m1 -e "$2" "$1" | head -1 || true)
    [ -n "$match" ] && { echo "$match"; return 0; }
    sleep 0.05
  done
  # A last look: the process may have written the line just before it exited.
  match=$(grep -o -m1 -e "$2" "$1" | head -1 || true)
  [ -n "$match" ] && { echo "$match"; return 0; }
  echo "no line matching '$2' in $1:" >&2
  cat "$1" >&2
  return 1
}

# shellcheck disable=SC2317  # called by the trap
e2e_cleanup() {
  local pid
  for pid in "${e2e_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${e2e_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ ${#e2e_dirs[@]} -eq 0 ] || rm -rf "${e2e_dirs[@]}"
}
trap e2e_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
