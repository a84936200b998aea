#!/usr/bin/env bash
# Debian packages the test suite needs. Idempotent: does nothing when they are already there.
set -euo pipefail
needed=()
for pkg in "$@"; do :; done
# (filled in as features need them: chromium for the audit report test, gcc-avr/simavr for the firmware)
wanted=()
for pkg in "${wanted[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || needed+=("$pkg")
done
if [ "${#needed[@]}" -eq 0 ]; then
  exit 0
fi
sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
echo "installing Debian packages: ${needed[*]}"
$sudo_cmd apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${needed[@]}"
