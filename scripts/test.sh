#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (root), then runs
# the whole suite: core tests and GUI tests, the latter under a virtual X server.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="xvfb xauth libgl1 libglx-mesa0 libgl1-mesa-dri libegl1 libopengl0 libdbus-1-3
  libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render-util0 libxcb-shape0 libxcb-xfixes0 libxcb-xinerama0 libxcb-xinput0 x11-utils
  libfontconfig1 libxrender1 libxi6 libxkbcommon0"

if ! command -v xvfb-run >/dev/null 2>&1 || ! ldconfig -p | grep -q libxcb-cursor; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $APT_PACKAGES
fi

python3 -m pip install -q --disable-pip-version-check -e ".[testing]"

export QT_QPA_PLATFORM=xcb
export PYTHONUNBUFFERED=1
# Two cores: torch's intra-op pool sized to the machine keeps tests from oversubscribing.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec xvfb-run -a -s "-screen 0 1600x1200x24" python3 -m pytest -ra "$@"
