#!/usr/bin/env bash
# Installs Debian's Chromium for the e2e tests when it is missing. playwright-core drives
# this system browser: we never download a browser build of our own (the machine reaches
# package registries only, and a pinned distro package is reproducible in CI).
set -euo pipefail
CHROMIUM="${SHOPMESH_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
test -x "$CHROMIUM"
