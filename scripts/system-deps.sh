#!/usr/bin/env bash
# Install the Debian packages billing-batch needs, if any is missing:
#   libharfbuzz-subset0  WeasyPrint's font subsetting (without it: a warning and ~5x slower PDFs)
#   poppler-utils        pdftotext/pdftoppm, to read PDFs back in tests
#   postgresql           initdb/postgres for the scale tests' throwaway cluster (make test-scale)
set -euo pipefail
pkgs=(libharfbuzz-subset0 poppler-utils postgresql)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
  echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
