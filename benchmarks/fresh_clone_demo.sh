#!/bin/bash
# Issue "Unlearning pipeline" targets: a newcomer's first `make demo` on a fresh clone (install
# included) and a second run, each timed; the demo prints approval -> certified with its split.
#   benchmarks/fresh_clone_demo.sh [REPO]   (default: this checkout)   -> bench-out/fresh_clone_demo/
set -euo pipefail
repo=$(cd "${1:-$(dirname "$0")/..}" && pwd)
work=$(mktemp -d)
out="$repo/bench-out/fresh_clone_demo"
mkdir -p "$out"
git clone -q "$repo" "$work/clone"
cd "$work/clone"
export OBLIVIO_HOME="$work/home"
unset DATABASE_URL CELERY_BROKER_URL CELERY_RESULT_BACKEND
for run in first second; do
  started=$(date +%s)
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  make demo DEMO_ARGS="--exit --port $port" > "$out/$run.log" 2>&1
  echo "$run run: $(( $(date +%s) - started )) s ($(grep -h 'Approval ->' "$out/$run.log"))" | tee -a "$out/times.txt"
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/times.txt"
rm -rf "$work"
