#!/usr/bin/env bash
# Podman, runc and catatonit (the pause process of podman's pods), which build and run the image
# (tests/test_image.py, tests/test_kit_under_podman.py), and the image's base:
# no registry need be reachable, so debian:bookworm-slim is made the way Debian's official one
# is, with mmdebstrap (minbase, merged /usr, no documentation, manual pages or locales, no apt
# lists), into .cache/images/. The test imports it into podman under the Dockerfile's name.
set -euo pipefail
cd "$(dirname "$0")/../.."

missing=()
for tool in podman runc catatonit mmdebstrap; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  else
    echo "warning: ${missing[*]} missing and cannot be installed here; the image tests skip (or fail under CI)" >&2
    exit 0
  fi
fi

rootfs=.cache/images/debian-bookworm-slim.tar
if [ -s "$rootfs" ]; then
  exit 0
fi
mkdir -p "$(dirname "$rootfs")"
if ! mmdebstrap --quiet --format=tar --variant=minbase \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  bookworm "$rootfs.partial" \
  "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main"; then
  rm -f "$rootfs.partial"
  echo "warning: the debian:bookworm-slim root filesystem could not be made; the image tests skip (or fail under CI)" >&2
  exit 0
fi
mv "$rootfs.partial" "$rootfs"
