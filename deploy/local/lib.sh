# shellcheck shell=bash disable=SC2034  # variables used by the scripts that source this file
# Shared settings and helpers for deploy/local/{install,up,down,status,test}. Sourced, not run.

VF_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VF_LOCAL="$VF_ROOT/deploy/local"
VF_CACHE="${VITALFLOW_LOCAL_CACHE_DIR:-$VF_LOCAL/.cache}"
VF_RUN="${VITALFLOW_LOCAL_RUN_DIR:-$VF_LOCAL/.run}"
# Absolute (it goes into config files and command lines, and strays are found by it).
case "$VF_RUN" in /*) ;; *) VF_RUN="$PWD/$VF_RUN" ;; esac
if [ -d "$VF_RUN" ]; then VF_RUN=$(cd "$VF_RUN" && pwd); fi
VF_VENV="$VF_ROOT/.venv"
VF_PY="$VF_VENV/bin/python"

VF_MQTT_PORT="${VITALFLOW_LOCAL_MQTT_PORT:-1883}"
VF_KAFKA_PORT="${VITALFLOW_LOCAL_KAFKA_PORT:-9092}"
VF_KAFKA_CONTROLLER_PORT="${VITALFLOW_LOCAL_KAFKA_CONTROLLER_PORT:-9093}"
VF_MONGO_PORT="${VITALFLOW_LOCAL_MONGO_PORT:-27017}"

# Kafka's version is the one the pom asks for; install re-downloads the jars when the pom
# changes (a stamp file beside them holds the pom's hash).
VF_KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' \
    "$VF_ROOT/deploy/kafka/pom.xml")
VF_KAFKA_LIBS="$VF_CACHE/kafka-$VF_KAFKA_VERSION/libs"
# mongo-java-server likewise: its jars and our compiled launcher (deploy/mongo/) live in
# VF_MONGO_HOME/{libs,classes}, rebuilt when the pom or the launcher changes.
VF_MONGO_VERSION=$(sed -n 's:.*<mongo-java-server.version>\(.*\)</mongo-java-server.version>.*:\1:p' \
    "$VF_ROOT/deploy/mongo/pom.xml")
VF_MONGO_HOME="$VF_CACHE/mongo-$VF_MONGO_VERSION"
VF_MONGO_HEAP_OPTS="${VITALFLOW_LOCAL_MONGO_HEAP_OPTS:--Xms64m -Xmx1536m}"
# FerretDB is no longer a service here; `deploy/local/install ferretdb` still builds it for
# tests/bench/bench_store.py.
VF_FERRET_BIN="$VF_CACHE/ferretdb/ferretdb-vitalflow"
VF_KAFKA_HEAP_OPTS="${VITALFLOW_LOCAL_KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"

# Services, in start order.
VF_SERVICES=(mosquitto kafka mongo)
# Services this run dir may still hold from an older checkout: `down` stops them too.
VF_RETIRED_SERVICES=(ferretdb)

vf_log() { printf '[vitalflow-local] %s\n' "$*" >&2; }
vf_die() { printf '[vitalflow-local] ERROR: %s\n' "$*" >&2; exit 1; }

# Seconds since the epoch, with fractions, for timings.
vf_now() { date +%s.%N; }
vf_elapsed() { awk -v a="$1" -v b="$(vf_now)" 'BEGIN { printf "%.1f", b - a }'; }

vf_sha256() { cat "$@" | sha256sum | cut -c1-16; }

vf_port() {
    case "$1" in
        mosquitto) echo "$VF_MQTT_PORT" ;;
        kafka) echo "$VF_KAFKA_PORT" ;;
        mongo) echo "$VF_MONGO_PORT" ;;
    esac
}

vf_logfile() {
    case "$1" in
        mosquitto) echo "$VF_RUN/mosquitto/mosquitto.log" ;;
        kafka) echo "$VF_RUN/kafka/server.log" ;;
        mongo) echo "$VF_RUN/mongo/stdout.log" ;;
    esac
}

# True when PID is a live (not zombie) process of SERVICE; with RUN_PATH, only if one of
# its arguments also contains RUN_PATH. Bash builtins only: it runs for every process.
vf_pid_is() {
    local pid=$1 svc=$2 run_path=${3:-} stat state args a main program found_main found_path
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || return 1
    state=${stat##*) }
    state=${state%% *}
    [ "$state" != "Z" ] && [ "$state" != "X" ] || return 1
    { mapfile -d '' args <"/proc/$pid/cmdline"; } 2>/dev/null || return 1
    [ ${#args[@]} -gt 0 ] || return 1
    case "$svc" in
        mosquitto) program=mosquitto main= ;;
        kafka) program=java main=kafka.Kafka ;;
        mongo) program=java main=VitalflowMongoServer ;;
        ferretdb) program=ferretdb-vitalflow main= ;;
        *) return 1 ;;
    esac
    [ "${args[0]##*/}" = "$program" ] || return 1
    found_main=0
    found_path=0
    [ -z "$main" ] && found_main=1
    [ -z "$run_path" ] && found_path=1
    for a in "${args[@]:1}"; do
        [ "$a" = "$main" ] && found_main=1
        case "$a" in *"$run_path"*) found_path=1 ;; esac
    done
    [ "$found_main" = 1 ] && [ "$found_path" = 1 ]
}

# Prints the pid of SERVICE if it is running (per its pid file), else returns 1.
vf_running_pid() {
    local svc=$1 pidfile="$VF_RUN/$1/pid" pid
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    vf_pid_is "$pid" "$svc" || return 1
    echo "$pid"
}

# Pids of SERVICE processes that use this run dir but are not in its pid file (lost pid file).
vf_stray_pids() {
    local svc=$1 p known
    known=$(vf_running_pid "$svc" || true)
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [ "$p" = "$known" ] && continue
        vf_pid_is "$p" "$svc" "$VF_RUN/$svc/" && echo "$p"
    done
    return 0
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
vf_port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

vf_tail_log() {
    local svc=$1 n=${2:-40} f
    f=$(vf_logfile "$svc")
    for f in $(printf '%s\n' "$f" "$VF_RUN/$svc/stdout.log" | sort -u); do
        if [ -s "$f" ]; then
            printf -- '----- last %s lines of %s -----\n' "$n" "$f" >&2
            tail -n "$n" "$f" >&2
        fi
    done
}
