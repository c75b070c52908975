#!/usr/bin/env bash
# Instructions per call of one rewrite bench function, under callgrind: a figure that does not move with
# the machine's load, unlike criterion's wall-clock times on shared cores (docs/PERFORMANCE.md).
#
#   bash benches/instructions.sh                      # ours and the baselines on the three corpus pages
#   bash benches/instructions.sh html/shop-100k/cobrowse ours
#
# Needs valgrind. Each run is bounded: criterion's --profile-time, and a timeout around valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."

# REWRITE_BENCH names an already built bench binary (e.g. one kept from an earlier commit, to compare).
if [ -n "${REWRITE_BENCH:-}" ]; then
  bench=$REWRITE_BENCH
else
  cargo bench --bench rewrite --no-run 2>/dev/null
  bench=$(ls -t target/release/deps/rewrite-* | grep -v '\.d$' | head -1)
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# One bench id (group/function) and the Rust function that does one page's work in it.
count() {
  local id=$1 function=$2 file
  file="$out/$(echo "$id" | tr '/' '_')"
  timeout 600 valgrind --tool=callgrind --callgrind-out-file="$file" \
    "$bench" --bench "$id\$" --profile-time 2 >/dev/null 2>&1
  callgrind_annotate --inclusive=yes --tree=caller "$file" 2>/dev/null | python3 -c '
import re, sys
function, id = sys.argv[1], sys.argv[2]
text = sys.stdin.read()
# Caller lines just above the function'"'"'s own line carry its inclusive cost and call count.
block = re.findall(r"((?:^ *[0-9,]+ \([^)]*\)  < .*\n)+)^ *[0-9,]+ \([^)]*\)  \*  .*rewrite::rewriters::%s(?: \[|$)" % re.escape(function), text, re.M)
ir = calls = 0
for callers in block:
    for m in re.finditer(r"([0-9,]+) \([^)]*\)  < .*\((\d+)x\)", callers):
        ir += int(m.group(1).replace(",", "")); calls += int(m.group(2))
print(f"{id:45} {ir / max(calls, 1) / 1e6:8.3f} M instructions per page ({calls} calls)")
' "$function" "$id"
}

if [ $# -eq 2 ]; then
  count "$1" "$2"
  exit
fi
for page in shop-100k news-300k docs-1m; do
  count "html/$page/lol_html_passthrough" passthrough
  count "html/$page/lol_html_star_noop" star_noop
  count "html/$page/lol_html_star_noop_lexer" star_noop_lexer
  count "html/$page/naive_prefix" naive
  count "html/$page/cobrowse" ours
done
