#!/usr/bin/env bash
# `make test-arm64`: the edge and firmware_bridge suites on arm64, under qemu user-mode emulation, in an arm64
# Debian bookworm root, as on a Raspberry Pi 4 (Cortex-A72) or Pi 5 (Cortex-A76) running 64-bit Debian.
#
# What it does (every step is skipped when already done):
#   1. installs qemu-user-static (>= 8, from bookworm-backports on Debian 12; see "why >= 8" below) and mmdebstrap
#      with apt-get when they are missing;
#   2. registers qemu as the binfmt_misc interpreter of arm64 ELF binaries (mounting binfmt_misc first if needed),
#      with the F flag, so the interpreter is opened now and works inside the chroot;
#   3. builds the arm64 root once with mmdebstrap (python3, python3-venv, mosquitto, gcc, mount: ROOT_PACKAGES) in
#      $ARM64_DIR/root (default build/arm64/root: ignored by git, `make clean` removes it), adding packages to a
#      root built before the list grew;
#   4. creates the venv /opt/spectrolite-venv inside the root and installs the checkout into it, editable, with
#      the extras $ARM64_EXTRAS (arm64 wheels from the package index; never TensorFlow), again when setup.cfg or
#      pyproject.toml change;
#   5. per CPU of $ARM64_CPU: prints the qemu version the emulated processes get, the CPU the root sees and the
#      self-test of every committed trainer-built bundle (golden vectors written on x86_64), then runs
#      `SPECTROLITE_EDGE_ONLY=1 pytest $ARM64_TESTS` in the root, the checkout bind-mounted at /src, with
#      QEMU_CPU set so every emulated process sees that board's CPU (its /proc/cpuinfo and features).
#
# The mounts live in a private mount namespace (unshare -m): they vanish with the run, whatever ends it.
#
# Why qemu >= 8: Debian 12's qemu 7.2 shows the host's x86 /proc/cpuinfo to the emulated process and LiteRT then
# segfaults at interpreter creation; its `-cpu max` also gave wrong int8 outputs (the bundle self-test refused
# them). qemu 10 from bookworm-backports emulates /proc/cpuinfo and gives outputs equal to x86's.
#
# Variables (environment or make):
#   ARM64_TESTS        pytest paths or node ids        (default: tests/edge tests/firmware_bridge)
#   ARM64_CPU          qemu CPU model(s), space-separated; each runs the tests once (default: cortex-a72)
#   ARM64_PYTEST_ARGS  extra pytest arguments          (default: -q)
#   ARM64_DIR          where the root and its stamps go (default: build/arm64 in the checkout)
#   ARM64_EXTRAS       extras installed in the root venv (default: edge,prometheus,opcua,dev as `make test-edge`)
#   ARM64_SUITE        the Debian suite of the root      (default: bookworm)
#   ARM64_NICE         niceness of the whole run         (default: 19; the emulation is CPU-bound)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ARM64_TESTS=${ARM64_TESTS:-tests/edge tests/firmware_bridge}
ARM64_CPU=${ARM64_CPU:-cortex-a72}
ARM64_PYTEST_ARGS=${ARM64_PYTEST_ARGS:--q}
ARM64_DIR=${ARM64_DIR:-$REPO/build/arm64}
ARM64_EXTRAS=${ARM64_EXTRAS:-edge,prometheus,opcua,dev}
ARM64_SUITE=${ARM64_SUITE:-bookworm}
ARM64_NICE=${ARM64_NICE:-19}
ROOT=$ARM64_DIR/root
VENV=/opt/spectrolite-venv
# What the root holds besides Debian's required set: the interpreter, the broker the tests start, gcc and make for
# the C reference's tests, mount for the full-disk outbox tests (they mount a small tmpfs).
ROOT_PACKAGES="python3 python3-venv mosquitto gcc libc6-dev make ca-certificates mount"
QEMU_MIN_MAJOR=8
BINFMT=/proc/sys/fs/binfmt_misc
BINFMT_CONF=/usr/lib/binfmt.d/qemu-aarch64.conf
# The arm64 ELF header (e_machine 0xb7), as Debian's /usr/lib/binfmt.d/qemu-aarch64.conf matches it.
AARCH64_MAGIC='\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
AARCH64_MASK='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'

say() { printf 'test-arm64: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "expected to run as root (apt-get, binfmt_misc, mmdebstrap, chroot), got uid $(id -u)"
[ "$(uname -m)" = x86_64 ] || say "host is $(uname -m), not x86_64: this script is written for an x86_64 host"
renice -n "$ARM64_NICE" -p $$ >/dev/null

apt_install() {  # apt_install [-t SUITE] PACKAGE...
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 "$@"
}

qemu_binary() {  # the static qemu for aarch64, or nothing
  command -v qemu-aarch64-static 2>/dev/null || true
}

qemu_major() {  # major version of "$1", 0 when unknown
  "$1" --version 2>/dev/null | sed -n '1s/.*version \([0-9][0-9]*\)\..*/\1/p' | grep . || echo 0
}

# Debian 12 ships qemu 7.2; its backports carry qemu 10.  Added as a sources file of its own, updated alone.
add_backports() {
  local list=/etc/apt/sources.list.d/spectrolite-backports.sources
  if ! grep -rqs "${ARM64_SUITE}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    say "adding ${ARM64_SUITE}-backports to apt's sources ($list)"
    printf 'Types: deb\nURIs: %s\nSuites: %s-backports\nComponents: main\nSigned-By: %s\n' \
      "$(debian_mirror)" "$ARM64_SUITE" /usr/share/keyrings/debian-archive-keyring.gpg >"$list"
  fi
  apt-get update -q -o DPkg::Lock::Timeout=600 || say "apt-get update reported errors (an unreachable source?); going on"
}

debian_mirror() {  # the host's Debian mirror, as its apt sources name it
  local uri
  uri=$(grep -rhsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/ | grep -m1 '/debian/\?\( \|$\)' |
    sed -E 's/^URIs: *//; s/^deb (\[[^]]*\] )?//; s/ .*//')
  [ -n "$uri" ] || die "expected a Debian mirror in apt's sources, found none"
  echo "$uri"
}

ensure_tools() {
  local qemu major
  qemu=$(qemu_binary)
  major=0
  [ -z "$qemu" ] || major=$(qemu_major "$qemu")
  if [ "$major" -lt "$QEMU_MIN_MAJOR" ]; then
    say "qemu-user-static ${major/#0/absent}: need >= $QEMU_MIN_MAJOR, installing it from ${ARM64_SUITE}-backports"
    add_backports
    apt_install -t "${ARM64_SUITE}-backports" qemu-user-static
    qemu=$(qemu_binary)
    [ -n "$qemu" ] || die "expected qemu-aarch64-static after installing qemu-user-static, found none"
    major=$(qemu_major "$qemu")
    [ "$major" -ge "$QEMU_MIN_MAJOR" ] || die "expected qemu >= $QEMU_MIN_MAJOR, got $("$qemu" --version | head -1):" \
      "qemu 7.2 shows the host's x86 /proc/cpuinfo (LiteRT segfaults) and its -cpu max gives wrong int8 outputs"
  fi
  command -v mmdebstrap >/dev/null || { say "installing mmdebstrap"; apt_install mmdebstrap; }
  command -v unshare >/dev/null || die "expected unshare (util-linux) on PATH, found none"
  say "$("$qemu" --version | head -1)"
}

# The interpreter must be registered with F (fix binary): the kernel opens it at registration, so it runs inside
# the chroot, where the host's /usr/bin/qemu-* is not.  F also means the kernel keeps the binary it opened then: an
# entry registered before qemu was upgraded still runs the old qemu (7.2) under the new one's name, so an existing
# entry is always registered again.  run_tests prints the version that the emulated processes really get.
ensure_binfmt() {
  local qemu entry
  qemu=$(readlink -f "$(qemu_binary)")
  if [ ! -e "$BINFMT/register" ]; then
    say "mounting binfmt_misc on $BINFMT"
    mount -t binfmt_misc binfmt_misc "$BINFMT" ||
      die "expected to mount binfmt_misc on $BINFMT, could not (a container without CAP_SYS_ADMIN?)"
  fi
  [ "$(cat "$BINFMT/status")" = enabled ] || die "expected binfmt_misc enabled, got $(cat "$BINFMT/status")"
  entry=$BINFMT/qemu-aarch64
  [ ! -e "$entry" ] || echo -1 >"$entry"
  # Debian's own line (interpreter .../aarch64-binfmt-P, flags OPF) where the package ships one; else the same
  # match with F alone.  No systemd here to read /usr/lib/binfmt.d, so it is written to the kernel directly.
  if [ -r "$BINFMT_CONF" ]; then
    say "registering the arm64 binfmt interpreter as $BINFMT_CONF says"
    cat "$BINFMT_CONF" >"$BINFMT/register"
  else
    say "registering $qemu as the interpreter of arm64 ELF binaries"
    printf ':qemu-aarch64:M::%s:%s:%s:F' "$AARCH64_MAGIC" "$AARCH64_MASK" "$qemu" >"$BINFMT/register"
  fi || die "expected to register qemu-aarch64 in $BINFMT/register, could not"
  grep -q '^flags:.*F' "$entry" || die "expected the arm64 binfmt entry with flag F, got $(sed -n 's/^flags: //p' "$entry")"
}

ensure_root() {
  [ -e "$ROOT/.spectrolite-root" ] && return 0
  say "building the arm64 $ARM64_SUITE root in $ROOT (once; 12 minutes on a 2-core machine)"
  rm -rf "$ROOT"
  mkdir -p "$ARM64_DIR"
  mmdebstrap --arch=arm64 --variant=apt --mode=root \
    --include="${ROOT_PACKAGES// /,}" \
    "$ARM64_SUITE" "$ROOT" "$(debian_mirror)" </dev/null
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  date -u +%FT%TZ >"$ROOT/.spectrolite-root"
  echo "$ROOT_PACKAGES" >"$ROOT/.spectrolite-packages"
}

ensure_root_packages() {  # a root built before ROOT_PACKAGES grew gets the rest with apt-get
  [ "$(cat "$ROOT/.spectrolite-packages" 2>/dev/null)" = "$ROOT_PACKAGES" ] && return 0
  say "installing $ROOT_PACKAGES in the root"
  # shellcheck disable=SC2086  # a word list
  in_root /bin/sh -euc "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $ROOT_PACKAGES"
  echo "$ROOT_PACKAGES" >"$ROOT/.spectrolite-packages"
}

# Runs "$@" inside the root, in a private mount namespace holding /proc, /dev, /sys, a fresh /tmp and the checkout.
in_root() {
  unshare --mount --propagation private -- /bin/sh -eu -c '
    root=$1; repo=$2; shift 2
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --rbind /sys "$root/sys"
    mount -t tmpfs -o size=4g,mode=1777 tmpfs "$root/tmp"
    mkdir -p "$root/src"
    mount --bind "$repo" "$root/src"
    [ -z "${SPECTROLITE_DATASETS:-}" ] || { mkdir -p "$root/datasets"; mount --bind -o ro "$SPECTROLITE_DATASETS" "$root/datasets"; }
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    exec chroot "$root" "$@"
  ' in_root "$ROOT" "$REPO" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH="$VENV/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    ${QEMU_CPU:+QEMU_CPU=$QEMU_CPU} ${SPECTROLITE_DATASETS:+SPECTROLITE_DATASETS=/datasets} \
    ${http_proxy:+http_proxy=$http_proxy} ${https_proxy:+https_proxy=$https_proxy} ${no_proxy:+no_proxy=$no_proxy} "$@"
}

# A site that reaches the package index through a TLS-inspecting proxy adds its CA to the host the Debian way
# (/usr/local/share/ca-certificates); the root gets the same CAs, else pip fails there with CERTIFICATE_VERIFY_FAILED.
sync_local_cas() {
  local src=/usr/local/share/ca-certificates dst=$ROOT/usr/local/share/ca-certificates
  [ -d "$src" ] || return 0
  diff -rq "$src" "$dst" >/dev/null 2>&1 && return 0
  say "copying the host's local CA certificates ($src) into the root"
  rm -rf "$dst" && cp -r "$src" "$dst"
  in_root /usr/sbin/update-ca-certificates --fresh >/dev/null
}

ensure_venv() {
  local want
  want="$ARM64_EXTRAS $(cat "$REPO/setup.cfg" "$REPO/pyproject.toml" | sha256sum | cut -c1-16)"
  [ "$(cat "$ROOT/.spectrolite-venv" 2>/dev/null)" = "$want" ] && return 0
  say "installing the checkout with [$ARM64_EXTRAS] into $VENV in the root (arm64 wheels; no TensorFlow)"
  in_root /bin/sh -euc "
    [ -x $VENV/bin/python ] || python3 -m venv $VENV
    $VENV/bin/python -m pip install -q --upgrade pip
    cd /src && $VENV/bin/python -m pip install -q -e '.[$ARM64_EXTRAS]'
    $VENV/bin/python -m pip list 2>/dev/null | grep -iE '^(ai-edge-litert|numpy|scipy|scikit-learn|paho-mqtt) '
  "
  echo "$want" >"$ROOT/.spectrolite-venv"
}

SELF_TEST='
from pathlib import Path
from edge.bundle import load_bundle
for p in sorted(Path("tests/data/trained").glob("*.spectrolite")):
    print(f"self-test {p.name}: {load_bundle(p).self_test.summary()}", flush=True)
'

run_tests() {  # run_tests CPU
  local cpu=$1 start rc=0 pytest_rc=0
  say "running on QEMU_CPU=$cpu: $ARM64_TESTS"
  export QEMU_CPU=$cpu
  QEMU_VERSION=1 chroot "$ROOT" /bin/true | head -1 | sed 's/^/emulated by: /'
  in_root /bin/sh -c "uname -m; grep -E '^(CPU part|Features)' /proc/cpuinfo | sort -u; python3 --version" || true
  # The committed trainer-built bundles' self-test on this CPU: their golden vectors were written on x86_64, so
  # "bitwise identical" says the arm64 int8 outputs equal x86's (a wrong output refuses the bundle).
  in_root /bin/sh -c "cd /src && exec $VENV/bin/python -c '$SELF_TEST'" 2>&1 | grep -v 'XNNPACK delegate' ||
    { rc=$?; say "QEMU_CPU=$cpu: the committed bundles' self-test failed (exit status $rc)"; }
  start=$(date +%s)
  # shellcheck disable=SC2086  # ARM64_TESTS and ARM64_PYTEST_ARGS are word lists
  in_root /bin/sh -c "cd /src && SPECTROLITE_EDGE_ONLY=1 exec $VENV/bin/python -m pytest -p no:cacheprovider \
    $ARM64_PYTEST_ARGS $ARM64_TESTS" || pytest_rc=$?
  say "QEMU_CPU=$cpu: pytest exit status $pytest_rc after $(( $(date +%s) - start )) s"
  unset QEMU_CPU
  [ "$pytest_rc" = 0 ] || rc=$pytest_rc
  return "$rc"
}

if [ -z "${SPECTROLITE_DATASETS:-}" ] && [ -d "$REPO/../shared/datasets" ]; then
  SPECTROLITE_DATASETS=$(cd "$REPO/../shared/datasets" && pwd -P)
fi
export SPECTROLITE_DATASETS
ensure_tools
ensure_binfmt
ensure_root
sync_local_cas
ensure_root_packages
ensure_venv
status=0
for cpu in $ARM64_CPU; do
  run_tests "$cpu" || status=$?
done
exit "$status"
