#!/usr/bin/env bash
# A local, production-like stack on 127.0.0.1: a Prefect server, process work pools with one
# worker each, and an S3-compatible server (moto) with the buckets `colorization` and `archive`.
#
#   infra/stack.sh up       start what is not running yet, wait until healthy, write stack.env
#   infra/stack.sh status   each part: running (pid, address) or stopped
#   infra/stack.sh down     stop exactly what `up` started (its pid files' process groups)
#
# Then `set -a; . infra/stack.env; set +a` points Prefect's CLI, boto3 and the `colorize`
# CLI at the stack. Settings (environment variables, defaults in brackets):
#   COLORIZATION_STACK_PYTHON     the venv's python, whose prefect and moto run the stack
#                                 [<repo>/.venv/bin/python]
#   COLORIZATION_STACK_DIR        state: pid files, logs, Prefect's database [infra/.stack]
#   COLORIZATION_STACK_ENV_FILE   the env file written by `up` [infra/stack.env]
#   COLORIZATION_STACK_PREFECT_PORT  [4200]     COLORIZATION_STACK_S3_PORT  [9000]
#   COLORIZATION_STACK_POOLS      process work pools, one worker each; prefect.yaml's names
#                                 [colorization colorization-gpu]
#   COLORIZATION_STACK_TIMEOUT    seconds to wait for each part to become healthy [120]
#   COLORIZATION_STACK_STOP_TIMEOUT  seconds `down` waits after TERM before KILL [10]
# Nothing is bound to another address than 127.0.0.1; the credentials are dummies.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${COLORIZATION_STACK_PYTHON:-$REPO/.venv/bin/python}"
STATE="${COLORIZATION_STACK_DIR:-$REPO/infra/.stack}"
ENV_FILE="${COLORIZATION_STACK_ENV_FILE:-$REPO/infra/stack.env}"
PREFECT_PORT="${COLORIZATION_STACK_PREFECT_PORT:-4200}"
S3_PORT="${COLORIZATION_STACK_S3_PORT:-9000}"
read -r -a POOLS <<< "${COLORIZATION_STACK_POOLS:-colorization colorization-gpu}"
TIMEOUT="${COLORIZATION_STACK_TIMEOUT:-120}"
STOP_TIMEOUT="${COLORIZATION_STACK_STOP_TIMEOUT:-10}"
HOST=127.0.0.1
BUCKETS=(colorization archive)
# Start order; `down` stops them in reverse. A worker part is named after its pool.
PARTS=(s3 server)
for pool in "${POOLS[@]}"; do PARTS+=("worker-$pool"); done

PREFECT_API="http://$HOST:$PREFECT_PORT/api"
S3_ENDPOINT="http://$HOST:$S3_PORT"

die() { echo "stack: $*" >&2; exit 1; }

# The environment of every part and of stack.env: the stack's own Prefect home, no analytics,
# dummy credentials for the local S3 (never a developer's real ~/.aws profile).
stack_environment() {
    cat <<EOF
PREFECT_API_URL=$PREFECT_API
PREFECT_HOME=$STATE/prefect
PREFECT_SERVER_ANALYTICS_ENABLED=false
PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT=false
AWS_ENDPOINT_URL=$S3_ENDPOINT
AWS_ACCESS_KEY_ID=stack-dummy-key
AWS_SECRET_ACCESS_KEY=stack-dummy-secret
AWS_DEFAULT_REGION=us-east-1
COLORIZATION_HOME=s3://colorization
COLORIZATION_SOURCE=s3://archive/photos
COLORIZATION_INCOMING=s3://archive/incoming
COLORIZATION_COLORIZED=s3://archive/colorized
FIFTYONE_DATABASE_DIR=${FIFTYONE_DATABASE_DIR:-$STATE/fiftyone/db}
FIFTYONE_DO_NOT_TRACK=true
EOF
}

load_environment() {
    local line
    while IFS= read -r line; do export "${line?}"; done < <(stack_environment)
    unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL_S3
}

pid_of() { cat "$STATE/pids/$1.pid" 2>/dev/null || true; }
started_at() { ps -o lstart= -p "$1" 2>/dev/null || true; }

# is_ours PART PID: PID is alive and is the process `up` started (same start time), not a
# later process that reuses the number of one that died (after a reboot, say).
is_ours() {
    kill -0 "$2" 2>/dev/null && [[ "$(started_at "$2")" == "$(cat "$STATE/pids/$1.start")" ]]
}

running() {  # running PART: its recorded process is alive
    local pid
    pid="$(pid_of "$1")"
    [[ -n "$pid" ]] && is_ours "$1" "$pid"
}

# Starts a part in a session (process group) of its own, so `down` stops it with its children;
# the part execs in place, so $! is the group leader. Background jobs of a script inherit
# SIGINT ignored, and Prefect's worker stops itself with SIGINT: restore its default first.
LAUNCHER='import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.setsid()
os.execv(sys.argv[1], sys.argv[1:])'
launch() {  # launch PART COMMAND...
    local part="$1"; shift
    mkdir -p "$STATE/pids" "$STATE/logs"
    "$PY" -c "$LAUNCHER" "$@" >"$STATE/logs/$part.log" 2>&1 < /dev/null &
    echo $! > "$STATE/pids/$part.pid"
    started_at $! > "$STATE/pids/$part.start"
}

# A port someone else holds would make the part exit at once, or worse, answer our health
# check with another server: refuse it before starting.
port_free() {  # port_free PORT DESCRIPTION VARIABLE
    if "$PY" -c "import socket, sys; socket.create_connection(('$HOST', int(sys.argv[1])), 1)" \
            "$1" 2>/dev/null; then
        die "$2: port $HOST:$1 is taken by another program; choose another with $3"
    fi
}

wait_until() {  # wait_until PART DESCRIPTION PYTHON-CHECK: the check exits 0 when healthy
    local part="$1" what="$2" check="$3" deadline=$((SECONDS + TIMEOUT))
    until running "$part" && "$PY" -c "$check" >/dev/null 2>&1; do
        if ! running "$part"; then
            die "$what exited while starting; see $STATE/logs/$part.log"
        fi
        if (( SECONDS >= deadline )); then
            die "$what not healthy after ${TIMEOUT}s; see $STATE/logs/$part.log"
        fi
        sleep 1
    done
}

start_s3() {
    port_free "$S3_PORT" "S3 server" COLORIZATION_STACK_S3_PORT
    launch s3 "$PY" -m moto.server -H "$HOST" -p "$S3_PORT"
    wait_until s3 "S3 server ($S3_ENDPOINT)" \
        "import urllib.request; urllib.request.urlopen('$S3_ENDPOINT/moto-api/', timeout=2)"
}

ensure_buckets() {
    "$PY" - "${BUCKETS[@]}" <<'EOF'
import sys
import boto3
client = boto3.client("s3")  # endpoint and dummy credentials from the stack's environment
existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
for name in sys.argv[1:]:
    if name not in existing:
        client.create_bucket(Bucket=name)
EOF
}

start_server() {
    port_free "$PREFECT_PORT" "Prefect server" COLORIZATION_STACK_PREFECT_PORT
    launch server "$PY" -m prefect server start --host "$HOST" --port "$PREFECT_PORT"
    wait_until server "Prefect server ($PREFECT_API)" \
        "import urllib.request; urllib.request.urlopen('$PREFECT_API/health', timeout=2)"
}

ensure_pools() {
    local pool
    for pool in "${POOLS[@]}"; do
        if ! "$PY" -m prefect work-pool inspect "$pool" >/dev/null 2>&1; then
            "$PY" -m prefect work-pool create --type process "$pool" >/dev/null
        fi
    done
}

start_worker() {  # start_worker POOL
    local pool="$1"
    launch "worker-$pool" "$PY" -m prefect worker start --pool "$pool" --type process \
        --name "stack-$pool" --install-policy never
}

wait_worker() {  # wait_worker POOL: online once it has sent a heartbeat to the server
    local pool="$1"
    wait_until "worker-$pool" "Prefect worker (pool $pool)" "
import asyncio
from prefect.client.orchestration import get_client
async def online():
    async with get_client() as client:
        workers = await client.read_workers_for_work_pool('$pool')
    assert any(w.name == 'stack-$pool' and w.status.value == 'ONLINE' for w in workers)
asyncio.run(online())"
}

write_env_file() {
    mkdir -p "$(dirname "$ENV_FILE")"
    {
        echo "# Written by infra/stack.sh up; load it with: set -a; . $ENV_FILE; set +a"
        stack_environment
    } > "$ENV_FILE.tmp"
    mv "$ENV_FILE.tmp" "$ENV_FILE"
}

up() {
    [[ -x "$PY" ]] || die "no python at $PY; run \`make setup\` or set COLORIZATION_STACK_PYTHON"
    "$PY" -c "import moto.server, prefect" 2>/dev/null \
        || die "$PY lacks prefect or moto[server]; run \`make setup\`"
    mkdir -p "$STATE"
    load_environment
    local part pool started=()
    for part in s3 server; do
        if running "$part"; then
            echo "$part: already running (pid $(pid_of "$part"))"
        else
            "start_$part"
            echo "$part: started (pid $(pid_of "$part"))"
        fi
    done
    ensure_buckets
    ensure_pools
    # Workers start together and are then awaited: each takes a few seconds to register.
    for pool in "${POOLS[@]}"; do
        if running "worker-$pool"; then
            echo "worker-$pool: already running (pid $(pid_of "worker-$pool"))"
        else
            start_worker "$pool"
            started+=("$pool")
        fi
    done
    for pool in "${started[@]}"; do
        wait_worker "$pool"
        echo "worker-$pool: started (pid $(pid_of "worker-$pool"))"
    done
    write_env_file
    echo "stack up: Prefect $PREFECT_API, S3 $S3_ENDPOINT, pools ${POOLS[*]}; env in $ENV_FILE"
}

# The group of a part is ours while its leader is ours, or, once the leader is gone, while
# processes it started remain: the kernel gives no new process a number still in use as a
# process group id.
group_alive() {  # group_alive PART PID
    if kill -0 "$2" 2>/dev/null; then is_ours "$1" "$2"; else kill -0 -- "-$2" 2>/dev/null; fi
}

# stop PART...: TERM each part's process group (the part and every process it started, flow
# runs included), wait up to COLORIZATION_STACK_STOP_TIMEOUT seconds, then KILL what is left.
stop() {
    local part pid groups=() names=()
    for part in "$@"; do
        pid="$(pid_of "$part")"
        if [[ -z "$pid" ]]; then
            echo "$part: not running"
        elif ! group_alive "$part" "$pid"; then
            echo "$part: not running (stale pid $pid)"
            rm -f "$STATE/pids/$part.pid" "$STATE/pids/$part.start"
        else
            kill -TERM -- "-$pid" 2>/dev/null || true
            groups+=("$pid"); names+=("$part")
        fi
    done
    local deadline=$((SECONDS + STOP_TIMEOUT)) i alive
    while (( SECONDS < deadline )); do
        alive=0
        for i in "${!groups[@]}"; do group_alive "${names[$i]}" "${groups[$i]}" && alive=1; done
        (( alive )) || break
        sleep 0.2
    done
    for i in "${!groups[@]}"; do
        pid="${groups[$i]}"
        if group_alive "${names[$i]}" "$pid"; then
            kill -KILL -- "-$pid" 2>/dev/null || true
            echo "${names[$i]}: killed (pid $pid, still running after ${STOP_TIMEOUT}s)"
        else
            echo "${names[$i]}: stopped (pid $pid)"
        fi
        rm -f "$STATE/pids/${names[$i]}.pid" "$STATE/pids/${names[$i]}.start"
    done
}

down() {
    local part workers=()
    for part in "${PARTS[@]}"; do [[ "$part" == worker-* ]] && workers+=("$part"); done
    stop "${workers[@]}"  # workers first: they report to the server while they stop
    stop server s3
}

status() {
    local part pid where code=0
    for part in "${PARTS[@]}"; do
        case "$part" in
            s3) where="$S3_ENDPOINT buckets: ${BUCKETS[*]}" ;;
            server) where="$PREFECT_API" ;;
            worker-*) where="pool ${part#worker-}" ;;
        esac
        pid="$(pid_of "$part")"
        if running "$part"; then
            echo "$part: running (pid $pid) $where"
        else
            echo "$part: stopped"; code=3
        fi
    done
    echo "state: $STATE   env: $ENV_FILE"
    return "$code"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
