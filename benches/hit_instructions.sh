#!/usr/bin/env bash
# Instructions the proxy spends per cache hit, whole process, under callgrind: a figure that does not
# move with the machine's load (docs/PERFORMANCE.md, fifteenth pass).
#
#   bash benches/hit_instructions.sh                       # builds the release binary, then measures
#   PROXY_BIN=/path/to/cobrowse-proxy bash benches/hit_instructions.sh   # a kept binary of another commit
#
# A `serve` process runs under callgrind with instrumentation off; a small Python origin serves the load
# site's files as `public, max-age=3600`. A visitor session is opened, one image is loaded once (a miss,
# stored), then instrumentation is switched on for N hits of it over one keep-alive connection. Runs of
# 2,000 and 4,000 hits are taken and their difference divided by 2,000, so what the run does once (the
# session, the first page, the miss) drops out. Needs valgrind and python3; every step is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [ -n "${PROXY_BIN:-}" ]; then
  bin=$PROXY_BIN
else
  cargo build --release 2>/dev/null
  bin=$root/target/release/cobrowse-proxy
fi
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/origin.py" <<'EOF'
import functools, http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args): pass
    def end_headers(self):
        self.send_header("Cache-Control", "public, max-age=3600")
        super().end_headers()
server = http.server.ThreadingHTTPServer(
    ("127.0.0.1", int(sys.argv[1])), functools.partial(Handler, directory=sys.argv[2]))
server.serve_forever()
EOF

cat >"$work/visitor.py" <<'EOF'
# Opens a session for the load site, follows the visitor link, then loads one image `n` times.
import http.client, json, sys, urllib.parse
port, n, stage = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
api = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
api.request("POST", "/api/sessions", body=json.dumps({"url": "http://load.shop.test/"}),
            headers={"Content-Type": "application/json", "Host": f"localhost:{port}"})
visitor = urllib.parse.urlsplit(json.loads(api.getresponse().read())["visitor_url"])
host, path = visitor.netloc, visitor.path + ("?" + visitor.query if visitor.query else "")
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
for _ in range(5):
    conn.request("GET", path, headers={"Host": host, "Sec-Fetch-Dest": "document"})
    reply = conn.getresponse(); reply.read()
    if reply.status not in (301, 302, 303, 307, 308):
        break
    location = urllib.parse.urlsplit(urllib.parse.urljoin(f"http://{host}{path}", reply.getheader("Location")))
    if location.netloc != host:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    host, path = location.netloc, location.path + ("?" + location.query if location.query else "")
image = {"Host": host, "Accept": "image/*", "Sec-Fetch-Dest": "image"}
conn.request("GET", "/img/p0.png", headers=image); conn.getresponse().read()
with open(stage, "w") as f:
    f.write("ready\n")
with open(stage + ".go") as f:
    f.read()  # blocks until the script, with instrumentation on, says go
for _ in range(n):
    conn.request("GET", "/img/p0.png", headers=image)
    reply = conn.getresponse(); reply.read()
    assert reply.status == 200 and "hit" in reply.getheader("Cache-Status", ""), reply.getheader("Cache-Status")
EOF

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Collected instructions for one run of `hits` hits.
collected() {
  local hits=$1 origin_port proxy_port origin vg visitor stage
  origin_port=$(free_port)
  proxy_port=$(free_port)
  stage=$work/stage-$hits
  python3 "$work/origin.py" "$origin_port" "$root/fixtures/sites/load.shop.test" >"$work/origin-$hits.log" 2>&1 &
  origin=$!
  pids+=("$origin")
  # Not under `timeout`: callgrind_control needs valgrind's own PID. The visitor's timeout bounds the run.
  COBROWSE_LOG=warn valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$work/callgrind-$hits" "$bin" serve --listen "127.0.0.1:$proxy_port" \
    --resolve "*.test=127.0.0.1:$origin_port" --data-dir "$work/data-$hits" \
    --ca-dir "$work/ca-$hits" >"$work/proxy-$hits.log" 2>&1 &
  vg=$!
  pids+=("$vg")
  for _ in $(seq 1 120); do
    curl -s -o /dev/null "http://127.0.0.1:$proxy_port/healthz" && break
    sleep 0.5
  done
  mkfifo "$stage.go"
  timeout 600 python3 "$work/visitor.py" "$proxy_port" "$hits" "$stage" >"$work/visitor-$hits.log" 2>&1 &
  visitor=$!
  for _ in $(seq 1 120); do [ -s "$stage" ] && break; sleep 0.25; done
  callgrind_control -i on "$vg" >/dev/null 2>&1
  timeout 30 bash -c "echo go >'$stage.go'"
  wait "$visitor"
  callgrind_control -i off "$vg" >/dev/null 2>&1
  kill -INT "$vg"
  for _ in $(seq 1 300); do kill -0 "$vg" 2>/dev/null || break; sleep 0.2; done
  kill "$origin"
  grep -o 'Collected : [0-9]*' "$work/proxy-$hits.log" | awk '{print $3}'
}

# Not in `$(…)`: a subshell would lose the PIDs the cleanup needs.
collected 2000 >"$work/low"
collected 4000 >"$work/high"
awk -v a="$(cat "$work/low")" -v b="$(cat "$work/high")" 'BEGIN { printf "cache hit: %.1f K instructions per request (proxy process)\n", (b - a) / 2000 / 1000 }'
