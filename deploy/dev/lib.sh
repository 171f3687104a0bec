# shellcheck shell=bash disable=SC2034 # variables here are used by the sourcing scripts
# Shared helpers for the dev-service scripts in deploy/dev (kafka, search):
# port picking, waiting, pid files / process groups, and resolving jars
# from Maven Central into a cache outside the repo. Sourced, not executed.

KAPPA_DEV_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAPPA_CACHE=${KAPPA_CACHE:-$HOME/.cache/kappa}
KAPPA_RUN=${KAPPA_RUN:-/tmp/kappa-dev}
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
JAVAC=${JAVA_HOME:+$JAVA_HOME/bin/}javac
PROG=${PROG:-$(basename "$0")}

# die MESSAGE...: print an error and exit non-zero.
die() {
    echo "$PROG: error: $*" >&2
    exit 1
}

# log MESSAGE...: progress messages go to stderr; stdout is kept for results.
log() {
    echo "$PROG: $*" >&2
}

# need CMD...: fail early when a required tool is missing.
need() {
    local cmd
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null 2>&1 || die "required command not found: $cmd"
    done
}

# free_port: print a TCP port on 127.0.0.1 that is free right now.
free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# port_in_use PORT: true when something listens on 127.0.0.1:PORT.
port_in_use() {
    python3 -c 'import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$1"
}

# check_port PORT: die unless PORT is a number and nothing listens on it.
check_port() {
    if ! [[ $1 =~ ^[1-9][0-9]*$ ]] || (($1 < 1 || $1 > 65535)); then
        die "invalid port: $1"
    fi
    if port_in_use "$1"; then
        die "port $1 on 127.0.0.1 is already in use"
    fi
}

# wait_until TIMEOUT_SECONDS CMD [ARGS...]: retry CMD every 0.5 s until it
# succeeds (return 0) or the timeout passes (return 1). When WAIT_PID is set
# and that process dies, give up at once (return 2).
wait_until() {
    local timeout=$1
    shift
    local deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        if [[ -n ${WAIT_PID:-} ]] && ! kill -0 "$WAIT_PID" 2>/dev/null; then
            return 2
        fi
        sleep 0.5
    done
    return 1
}

# read_pid PIDFILE: print the pid stored in PIDFILE (nothing if none or
# nonsense: "kill -- -0" or "-1" would hit far more than one service).
read_pid() {
    local pid=
    [[ -f $1 ]] && pid=$(tr -dc '0-9' <"$1")
    if [[ $pid =~ ^[1-9][0-9]*$ ]] && ((pid > 1)); then
        echo "$pid"
    fi
    return 0
}

# pid_running PIDFILE: true when the process group recorded in PIDFILE
# still has a live process, and its leader (if alive) is ours: its command
# line mentions the directory that holds PIDFILE (guards against pid reuse
# after a reboot or a stale pid file).
pid_running() {
    local pid
    pid=$(read_pid "$1")
    [[ -n $pid ]] && kill -0 -- "-$pid" 2>/dev/null || return 1
    if [[ -r /proc/$pid/cmdline ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$(dirname "$(abs_path "$1")")"
    fi
}

# start_detached PIDFILE LOGFILE CMD [ARGS...]: run CMD in a new session
# (so it leads its own process group), output to LOGFILE, and record its pid.
start_detached() {
    local pidfile=$1 logfile=$2
    shift 2
    setsid "$@" >>"$logfile" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$pidfile"
    # setsid only forks when the caller leads a process group, which a
    # script's background child never does, so the pid is also the group id
    # once setsid has run. Check it, as stop relies on it.
    local i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        [[ $(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ') != "$pid" ]] || return 0
        kill -0 "$pid" 2>/dev/null || return 0 # died already: the caller sees it
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    die "could not start $1 in its own process group"
}

# stop_group PIDFILE [TIMEOUT_SECONDS]: TERM the whole process group from
# PIDFILE, KILL it after the timeout, remove PIDFILE. Idempotent.
stop_group() {
    local pidfile=$1 timeout=${2:-30}
    if ! pid_running "$pidfile"; then
        rm -f "$pidfile"
        return 0
    fi
    local pid
    pid=$(read_pid "$pidfile")
    kill -TERM -- "-$pid" 2>/dev/null || true
    if ! wait_until "$timeout" group_gone "$pid"; then
        log "process group $pid still alive after ${timeout}s; sending KILL"
        kill -KILL -- "-$pid" 2>/dev/null || true
        wait_until 10 group_gone "$pid" || die "process group $pid survived KILL"
    fi
    rm -f "$pidfile"
}

# group_gone PGID: true when no process is left in the group.
group_gone() {
    ! kill -0 -- "-$1" 2>/dev/null
}

# log_tail LOGFILE [LINES]: show the end of a log on stderr (for failures).
log_tail() {
    local lines=${2:-40}
    if [[ -s $1 ]]; then
        echo "---- last $lines lines of $1 ----" >&2
        tail -n "$lines" "$1" >&2
        echo "---- end of $1 ----" >&2
    fi
}

# file_hash FILE...: a short content hash of the given files.
file_hash() {
    cat "$@" | sha256sum | cut -c1-16
}

# maven_resolve POMDIR OUTDIR: copy the runtime dependencies of POMDIR/pom.xml
# into OUTDIR. Skipped when OUTDIR holds a marker for the same pom. Uses a
# lock so that parallel starts do not resolve into the same place at once.
maven_resolve() {
    local pomdir=$1 outdir=$2
    local marker=$outdir/.kappa-complete
    local want
    want=$(file_hash "$pomdir/pom.xml")
    if [[ -f $marker && $(cat "$marker") == "$want" ]]; then
        return 0
    fi
    need mvn flock
    mkdir -p "$(dirname "$outdir")"
    (
        flock 9
        if [[ -f $marker && $(cat "$marker") == "$want" ]]; then
            exit 0
        fi
        log "resolving $(basename "$pomdir") jars from Maven Central into $outdir"
        local tmp=$outdir.tmp.$$
        rm -rf "$tmp"
        if ! (cd "$pomdir" && mvn -B -Dstyle.color=never dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.log" 2>&1); then
            grep -E 'ERROR|BUILD' "$tmp.log" | head -30 >&2 || true
            rm -rf "$tmp"
            die "maven dependency resolution failed for $pomdir/pom.xml (log: $tmp.log)"
        fi
        rm -f "$tmp.log"
        rm -rf "$outdir"
        mv "$tmp" "$outdir"
        echo "$want" >"$marker"
    ) 9>"$outdir.lock"
}

# Options shared by the service scripts: --port N, --dir DIR.
OPT_PORT=
OPT_DIR=
ARGS=()

# parse_common_opts ARGS...: fill OPT_PORT / OPT_DIR; the rest goes to ARGS.
parse_common_opts() {
    ARGS=()
    while (($#)); do
        case $1 in
        --port) (($# >= 2)) || die "--port needs a value"; OPT_PORT=$2; shift 2 ;;
        --port=*) OPT_PORT=${1#--port=}; shift ;;
        --dir) (($# >= 2)) || die "--dir needs a value"; OPT_DIR=$2; shift 2 ;;
        --dir=*) OPT_DIR=${1#--dir=}; shift ;;
        *) ARGS+=("$1"); shift ;;
        esac
    done
}

# abs_path PATH: PATH made absolute and normalised (it need not exist).
abs_path() {
    realpath -m -- "$1"
}
