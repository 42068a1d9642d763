#!/usr/bin/env bash
# Fresh machine -> installed dependencies (Python packages and Debian's Chromium) -> the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
python3 -m pip install -q -e .[cluster] -r requirements-dev.txt
export HF_HUB_OFFLINE=1
python3 -m pytest "$@"
