#!/usr/bin/env bash
# Debian packages the test suite needs, installed by `make test` (and so by CI). Idempotent: when they are
# all present it does nothing and asks no registry.
#   chromium                        the audit report test opens the HTML report headless
#   gcc-avr avr-libc                build the ATmega328P firmware
#   simavr libsimavr-dev            run that firmware in an emulated ATmega328P (firmware-in-the-loop tests)
#   gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gir1.2-gstreamer-1.0
#   gir1.2-gst-plugins-base-1.0     GStreamer and its introspection data: source.backend gst (the camera tests
#                                   run real videotestsrc pipelines)
#   libgirepository1.0-dev libcairo2-dev pkg-config python3-dev
#                                   build PyGObject + pycairo (the `camera` extra) in the venv: needed BEFORE
#                                   `pip install -e '.[dev]'` (the Makefile runs this script first)
set -euo pipefail
wanted=(chromium gcc-avr avr-libc simavr libsimavr-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gir1.2-gstreamer-1.0
  gir1.2-gst-plugins-base-1.0 libgirepository1.0-dev libcairo2-dev pkg-config python3-dev)
needed=()
for pkg in "${wanted[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || needed+=("$pkg")
done
if [ "${#needed[@]}" -eq 0 ]; then
  exit 0
fi
sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "error: Debian packages missing (${needed[*]}) and not root: run 'sudo apt-get install -y ${needed[*]}'" >&2
    exit 2
  fi
  sudo_cmd="sudo"
fi
echo "installing Debian packages: ${needed[*]}"
$sudo_cmd apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${needed[@]}"
