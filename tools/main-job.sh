#!/usr/bin/env bash
# The main job (`make drive`): a closed-loop simulated drive on the shipped model, then its DeepSHAP audit.
# Each run writes into a new folder runs/main/<UTC time>/ and ends by printing where the log and audit are.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
seconds="${DRIVE_SECONDS:-20}"
out="runs/main/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
echo "== simulated drive (${seconds} s, shipped model, virtual microcontroller on a pty)"
"$bin/car" drive --config configs/sim.yaml --duration "$seconds" --log "$out/drive.sqlite"
echo "== DeepSHAP audit of that drive"
"$bin/car" explain "$out/drive.sqlite" --out "$out/audit"
echo
echo "drive log:    $out/drive.sqlite   (car log info $out/drive.sqlite; car replay $out/drive.sqlite)"
echo "audit report: $out/audit/report.html   (numbers: $out/audit/audit.json)"
