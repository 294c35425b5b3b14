# Sourced by the bench scripts (bench-ab.sh, bench-settings.sh, bench-grpc.sh): the checks around a
# server they start themselves.

# Stops the script if something already listens on 127.0.0.1:$1.
require_free_port() {
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        echo "$(basename "$0"): something already listens on 127.0.0.1:$1; stop it first" >&2
        exit 1
    fi
}

# Waits (bounded) until the server with pid $1 answers readiness on port $2; stops the script if
# it exits first or never gets ready. $3 names it in the message.
wait_until_ready() {
    for _ in $(seq 1 240); do
        curl -sf "http://127.0.0.1:$2/v2/health/ready" >/dev/null && return 0
        kill -0 "$1" 2>/dev/null || break
        sleep 0.25
    done
    echo "$(basename "$0"): $3 did not get ready" >&2
    exit 1
}
