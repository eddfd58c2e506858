#!/usr/bin/env bash
# Build the bundled images (images/*, see images/README.md) into the machine's image store, from
# Debian's busybox-static. Idempotent: an image whose sources are unchanged is skipped.
# Usage: scripts/build-images.sh [--data-dir DIR] [IMAGE...]
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m ketch.images.bundled --no-cache "$@"
