#!/usr/bin/env bash
# Installs the real servers crowdflow runs and tests against (Debian packages), only when missing.
# Usage: scripts/system-deps.sh [mosquitto] [influxdb] [chromium] [fonts-noto-cjk] ...
# A package with a program is checked by that program; one without (fonts) by dpkg's record.
set -euo pipefail
want=("$@")
[ ${#want[@]} -gt 0 ] || want=(mosquitto influxdb)
declare -A bin=([mosquitto]=mosquitto [influxdb]=influxd [chromium]=chromium [mosquitto-clients]=mosquitto_pub [openssl]=openssl)
missing=()
for pkg in "${want[@]}"; do
  if [ -n "${bin[$pkg]:-}" ]; then
    b=${bin[$pkg]}
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || [ -x "/usr/bin/$b" ] || missing+=("$pkg")
  else
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root or sudo to apt-get install ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
