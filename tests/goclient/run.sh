#!/bin/sh
# Drive a server with haraqa's own Go client (tests/goclient/check.go).
#
#   tests/goclient/run.sh HARAQA_CHECKOUT [URL]
#
# HARAQA_CHECKOUT: a clone of github.com/haraqa/haraqa (docs/WIRE.md was measured at e6c7ec5).
# Built in GOPATH mode against Debian's packages, so nothing is downloaded: golang-go,
# golang-github-gorilla-websocket-dev, golang-github-pkg-errors-dev (the client's dependencies).
# Without URL, a `manage.py serve` with 2 workers and 3 volumes is started in a temp dir.
# IDLE_GAPS=85,95,118 also produces after those idle gaps (seconds) on pooled connections.
set -eu
checkout=$(cd "$1" && pwd)
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
server=""

mkdir -p "$work/go/src/github.com/haraqa" "$work/go/src/goclientcheck"
ln -s "$checkout" "$work/go/src/github.com/haraqa/haraqa"
cp "$repo/tests/goclient/check.go" "$work/go/src/goclientcheck/"
(cd "$work/go/src/goclientcheck" && GO111MODULE=off GOPATH="$work/go:/usr/share/gocode" GOCACHE="$work/cache" \
    go build -o "$work/check" .)

url=${2:-}
if [ -z "$url" ]; then
    port=$("$repo/.venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    HARAQA_DATA_DIR="$work/data" "$repo/.venv/bin/python" "$repo/manage.py" serve --port "$port" --workers 2 \
        "$work/v1" "$work/v2" "$work/v3" > "$work/server.log" 2>&1 &
    server=$!
    url="http://127.0.0.1:$port"
    until curl -sf "$url/topics" > /dev/null; do
        kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; exit 1; }
        sleep 0.2
    done
fi
"$work/check" "$url"
