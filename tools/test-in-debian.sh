#!/usr/bin/env bash
# Run `make test` (or another make target) on another Debian release, in a debootstrap chroot.
#
#   sudo tools/test-in-debian.sh trixie            # make test on Debian 13
#   sudo tools/test-in-debian.sh bullseye demo     # make demo on Debian 11
#
# The chroot lives in CHROOTS (default /var/tmp/mqttquic-chroots/<release>) and is reused;
# the committed tree (HEAD) is cloned into it fresh each run. Needs root, debootstrap, and
# the network to the Debian archive and PyPI. Nothing of the host's Python is used: the chroot
# has the release's own Python, gcc and mosquitto.
set -euo pipefail
release=${1:?usage: test-in-debian.sh RELEASE [make target]}
target=${2:-test}
root=${CHROOTS:-/var/tmp/mqttquic-chroots}/$release
repo=$(cd "$(dirname "$0")/.." && pwd)

if [ ! -x "$root/usr/bin/python3" ]; then
  mkdir -p "$root"
  debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-dev,gcc,make,mosquitto,git,ca-certificates \
    "$release" "$root"
fi
# The host's trust store and resolver: PyPI through whatever the host uses.
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"

mounted=()
cleanup() { for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done; }
trap cleanup EXIT
for fs in proc sys dev dev/pts; do
  mkdir -p "$root/$fs"
  if ! mountpoint -q "$root/$fs"; then
    mount --bind "/$fs" "$root/$fs"
    mounted=("$root/$fs" "${mounted[@]}")
  fi
done

rm -rf "$root/build/mqttquic"
mkdir -p "$root/build"
git -C "$repo" archive --format=tar --prefix=mqttquic/ HEAD | tar -x -C "$root/build"
echo "== $release: $(chroot "$root" python3 --version), $(chroot "$root" sh -c 'mosquitto -h 2>&1 | head -1')"
chroot "$root" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root CI=true LANG=C.UTF-8 bash -c "cd /build/mqttquic && make $target"
