#!/usr/bin/env bash
# Prove the edge runtime gives the same answers on aarch64 (Raspberry Pi, Jetson) as on x86.
#
# On an x86-64 Debian host, as root: build (once, cached) a Debian arm64 root filesystem with
# debootstrap + qemu user-mode emulation, install edgecam[edge] into a venv there from this
# checkout, run devices/ci/compare_outputs.py dump on the artifacts of every MODEL_DIR on the host
# and in the chroot under each emulated CPU, and compare. The chroot runs its models on the host's
# scene frames and prepared model inputs (the host's dump, passed with --inputs), so every model
# output is compared on identical inputs; the input path itself (scene drawing, resize and cast)
# is compared on its own, in grey levels. Exit 0 when all agree, 1 on any mismatch
# (compare_outputs.py names the artifact/output and the size of the difference), 2 on usage or
# setup errors.
#
# Usage: devices/ci/arm64-check.sh MODEL_DIR [MODEL_DIR ...]  # each holds *.manifest.json + artifacts;
#                                                             # folder names must differ
#        devices/ci/arm64-check.sh --setup-only                # build the rootfs and install, nothing else
#
# Environment:
#   EDGECAM_ARM64_CACHE   rootfs cache folder (default: /tmp/edgecam-arm64; outside the checkout so
#                         that nothing walks or copies a 1 GB rootfs); a second run reuses it
#   EDGECAM_ARM64_SUITE   Debian suite of the rootfs (default: the host's, else bookworm)
#   EDGECAM_ARM64_MIRROR  Debian mirror (default: the host's, read from /etc/apt/sources.list*)
#   EDGECAM_ARM64_CPUS    emulated CPUs, space separated (default: "cortex-a72 cortex-a76", Pi 4 and Pi 5)
#   EDGECAM_ARM64_FRAMES  synthetic frames per artifact (default: 3)
#   EDGECAM_ARM64_ATOL    absolute tolerance for scores and heatmaps on identical model inputs (default: 1e-4)
#   EDGECAM_ARM64_INPUT_ATOL  tolerance in grey levels for the input path: the chroot's own drawing of the
#                         scenes and its own resize of the host's frames against the host's (default: 1):
#                         OpenCV's 2x2 downscale and the scene drawing round differently on aarch64
#   EDGECAM_ARM64_EXACT   space-separated globs of outputs that must be bit-exact, e.g. "*int8.tflite/*/features"
#   EDGECAM_HOST_PYTHON   python with edgecam[edge] on the host (default: <repo>/.venv/bin/python, else python3)
#
# Traps this script handles, seen on Debian 12 hosts:
# * pip in the chroot needs the host's pip configuration, CA bundle and resolv.conf: copied in.
# * qemu 7.2 (Debian 12) passes the host's x86 /proc/cpuinfo through, and onnxruntime's CPU
#   detection crashes on it: an aarch64 cpuinfo for the emulated core is bind-mounted over it.
# * Under qemu's default CPU model ("max") LiteRT's int8 results are wrong; with QEMU_CPU set to a
#   real core (cortex-a72, cortex-a76) they are bit-exact with x86, XNNPACK against XNNPACK.

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${EDGECAM_ARM64_CACHE:-/tmp/edgecam-arm64}"
CPUS="${EDGECAM_ARM64_CPUS:-cortex-a72 cortex-a76}"
FRAMES="${EDGECAM_ARM64_FRAMES:-3}"
ATOL="${EDGECAM_ARM64_ATOL:-1e-4}"
INPUT_ATOL="${EDGECAM_ARM64_INPUT_ATOL:-1}"
VENV=/opt/edgecam-venv

log() { printf '[arm64-check] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

MODEL_DIRS=()
SETUP_ONLY=0
case "${1:-}" in
  --setup-only) SETUP_ONLY=1 ;;
  -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
  "") die "expected MODEL_DIR... (folders of *.manifest.json and artifacts) or --setup-only" ;;
  *) for dir in "$@"; do
       MODEL_DIRS+=("$(cd "$dir" && pwd)") || die "MODEL_DIR $dir is not a folder"
     done ;;
esac

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, chroot and mounts need it)"
[ "$(uname -m)" = x86_64 ] || die "expected an x86_64 host; this is $(uname -m)"
for dir in "${MODEL_DIRS[@]}"; do
  if ! compgen -G "$dir/*.manifest.json" >/dev/null && [ ! -f "$dir/manifest.json" ]; then
    die "no *.manifest.json or manifest.json in $dir"
  fi
done
if [ "${#MODEL_DIRS[@]}" -gt 1 ] && [ -n "$(for dir in "${MODEL_DIRS[@]}"; do basename "$dir"; done | sort | uniq -d)" ]; then
  die "MODEL_DIRs must have different folder names (their artifacts are keyed by it): ${MODEL_DIRS[*]}"
fi

host_suite() {
  local codename=""
  if [ -r /etc/os-release ]; then codename="$(. /etc/os-release && [ "${ID:-}" = debian ] && echo "${VERSION_CODENAME:-}")" || true; fi
  echo "${codename:-bookworm}"
}
SUITE="${EDGECAM_ARM64_SUITE:-$(host_suite)}"
ROOT="$CACHE/rootfs-$SUITE-arm64"

# The first Debian mirror the host uses for SUITE (not the security archive), from either the
# one-line format or deb822 .sources files.
host_mirror() {
  local uri=""
  uri="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
    | awk -v suite="$SUITE" '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit } }')" || true
  if [ -z "$uri" ]; then
    uri="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v suite="$SUITE" '
      BEGIN { RS = ""; FS = "\n" }
      { types = ""; uris = ""; suites = ""; enabled = "yes"
        for (i = 1; i <= NF; i++) {
          line = $i; if (line ~ /^#/) continue
          key = tolower(line); sub(/:.*/, "", key); sub(/^[^:]*:[ \t]*/, "", line)
          if (key == "types") types = line; else if (key == "uris") uris = line
          else if (key == "suites") suites = line; else if (key == "enabled") enabled = tolower(line)
        }
        if (enabled != "no" && (" " types " ") ~ / deb / && (" " suites " ") ~ (" " suite " ")) {
          split(uris, u, /[ \t]+/); print u[1]; exit } }')" || true
  fi
  echo "$uri"
}

ensure_host_tools() {
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [ -x /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)
  command -v update-binfmts >/dev/null || missing+=(binfmt-support)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || die "cannot mount binfmt_misc (a container without privileges?)"
  fi
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    update-binfmts --enable qemu-aarch64 2>/dev/null || true
  fi
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && [ -r /usr/lib/binfmt.d/qemu-aarch64-static.conf ]; then
    # what systemd-binfmt would do at boot, for hosts (containers) where it does not run
    grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64-static.conf > /proc/sys/fs/binfmt_misc/register
  fi
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || die "could not register qemu-aarch64 with binfmt_misc"
  grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 || die "binfmt entry qemu-aarch64 exists but is disabled"
}

MOUNTS=()
mount_into() {  # mount_into TARGET mount-args...: mount and remember for cleanup
  local target="$1"; shift
  mount "$@" "$target"
  MOUNTS+=("$target")
}
cleanup() {
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null || log "could not unmount ${MOUNTS[i]}"
  done
  MOUNTS=()
}
trap cleanup EXIT

assert_nothing_mounted_under() {
  if awk -v root="$1/" 'index($2, root) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    die "something is still mounted under $1; refusing to delete it"
  fi
}

build_rootfs() {
  if [ -f "$ROOT/.edgecam-rootfs-ok" ]; then
    log "reusing cached rootfs $ROOT"
    return
  fi
  local mirror="${EDGECAM_ARM64_MIRROR:-$(host_mirror)}"
  [ -n "$mirror" ] || die "no Debian mirror for '$SUITE' in /etc/apt/sources.list*; set EDGECAM_ARM64_MIRROR"
  if [ -e "$ROOT" ]; then
    log "removing incomplete rootfs $ROOT"
    assert_nothing_mounted_under "$ROOT"
    rm -rf --one-file-system "$ROOT"
  fi
  mkdir -p "$CACHE"
  log "debootstrap $SUITE arm64 from $mirror into $ROOT (several minutes under emulation)"
  debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$ROOT" "$mirror" > "$CACHE/debootstrap.log" 2>&1 \
    || { tail -n 30 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
  touch "$ROOT/.edgecam-rootfs-ok"
}

# An aarch64 /proc/cpuinfo for the emulated core (only the fields CPU-detection code reads).
fake_cpuinfo() {  # fake_cpuinfo CPU FILE
  local part features
  case "$1" in
    cortex-a72) part=0xd08; features="fp asimd evtstrm crc32 cpuid" ;;
    cortex-a76) part=0xd0b; features="fp asimd evtstrm crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" ;;
    cortex-a53) part=0xd03; features="fp asimd evtstrm crc32 cpuid" ;;
    cortex-a57) part=0xd07; features="fp asimd evtstrm crc32 cpuid" ;;
    *) die "no cpuinfo template for QEMU CPU '$1' (known: cortex-a53 cortex-a57 cortex-a72 cortex-a76)" ;;
  esac
  : > "$2"
  local n
  for n in 0 1 2 3; do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 0\n\n' \
      "$n" "$features" "$part" >> "$2"
  done
}

# Host files pip needs inside: resolver, CA bundle, pip configuration (global, xdg, root's).
copy_host_config() {
  local f
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    mkdir -p "$ROOT/etc/ssl/certs"
    cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
  fi
  for f in /etc/pip.conf /root/.config/pip/pip.conf /root/.pip/pip.conf; do
    if [ -f "$f" ]; then mkdir -p "$ROOT$(dirname "$f")"; cp -L "$f" "$ROOT$f"; fi
  done
  if [ -d /etc/xdg/pip ]; then mkdir -p "$ROOT/etc/xdg"; rm -rf "$ROOT/etc/xdg/pip"; cp -rL /etc/xdg/pip "$ROOT/etc/xdg/pip"; fi
}

mount_chroot() {  # mount_chroot CPU
  local cpuinfo="$CACHE/cpuinfo-$1"
  fake_cpuinfo "$1" "$cpuinfo"
  mount_into "$ROOT/proc" -t proc proc
  mount_into "$ROOT/proc/cpuinfo" --bind "$cpuinfo"
  mount_into "$ROOT/sys" -t sysfs sysfs
  mount_into "$ROOT/dev" --bind /dev
  mount_into "$ROOT/dev/pts" --bind /dev/pts
}

# Run a command in the chroot with a clean environment plus the host's PIP_* and proxy settings.
in_chroot() {  # in_chroot CPU command...
  local cpu="$1"; shift
  local -a envs=(HOME=/root LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin QEMU_CPU="$cpu")
  local name
  while IFS= read -r name; do
    envs+=("$name=${!name}")
  done < <(compgen -e | grep -E '^(PIP_[A-Z_]+|https?_proxy|no_proxy|HTTPS?_PROXY|NO_PROXY)$' || true)
  env -i "${envs[@]}" chroot "$ROOT" "$@"
}

install_edgecam() {
  log "copying the package sources to $ROOT/src"
  rm -rf "$ROOT/src"
  mkdir -p "$ROOT/src"
  # only what the build needs: not .venv, not training runs that may change while we copy
  local item items=()
  for item in pyproject.toml README.md LICENSE training export edge devices; do
    [ -e "$REPO/$item" ] && items+=("$item")
  done
  tar -C "$REPO" --exclude=__pycache__ --exclude='*.pyc' -cf - "${items[@]}" | tar -C "$ROOT/src" -xf -
  local first_cpu="${CPUS%% *}"
  if [ ! -x "$ROOT$VENV/bin/python" ]; then
    in_chroot "$first_cpu" python3 -m venv "$VENV"
  fi
  log "pip install edgecam[edge] in the chroot (dependencies are cached after the first run)"
  # the host's pip configuration may name local indexes that do not exist in the chroot: pip
  # warns once per package about each; those lines are dropped, everything else is shown
  if ! in_chroot "$first_cpu" "$VENV/bin/python" -m pip install -q "/src[edge]" 2>&1 \
      | { grep -v "^WARNING: Location '.*' is ignored" || true; }; then
    die "pip install edgecam[edge] failed in the arm64 chroot"
  fi
  in_chroot "$first_cpu" "$VENV/bin/python" -c \
    "import numpy, onnxruntime, cv2, ai_edge_litert.interpreter, platform; print('arm64 chroot:', platform.machine(), 'numpy', numpy.__version__, 'onnxruntime', onnxruntime.__version__)"
  # the installed package, not the copied sources, is what runs: catch what the wheel left out
  in_chroot "$first_cpu" sh -c "cd / && $VENV/bin/python -c 'import edge.detector, edge.synthetic, devices'" \
    || die "edgecam installed in the chroot but cannot import its runtime (is a subpackage missing from pyproject.toml's packages?)"
}

host_python() {
  if [ -n "${EDGECAM_HOST_PYTHON:-}" ]; then echo "$EDGECAM_HOST_PYTHON"
  elif [ -x "$REPO/.venv/bin/python" ]; then echo "$REPO/.venv/bin/python"
  else echo python3; fi
}

ensure_host_tools
mkdir -p "$CACHE"
exec 9> "$CACHE/.lock"
flock -n 9 || die "another arm64-check is using $CACHE"
build_rootfs
copy_host_config
set -- $CPUS
mount_chroot "$1"
install_edgecam
if [ "$SETUP_ONLY" = 1 ]; then
  log "setup done: rootfs $ROOT, venv $VENV"
  exit 0
fi

HOST_PY="$(host_python)"
log "x86_64 reference dump with $HOST_PY"
(cd "$REPO" && "$HOST_PY" devices/ci/compare_outputs.py dump "${MODEL_DIRS[@]}" "$CACHE/x86_64.npz" --frames "$FRAMES") \
  || die "the x86_64 reference dump failed"
EXACT_ARGS=()
for glob in ${EDGECAM_ARM64_EXACT:-}; do EXACT_ARGS+=(--exact "$glob"); done

FAILED=()
for cpu in $CPUS; do
  cleanup
  mount_chroot "$cpu"
  rm -rf "$ROOT/work"
  mkdir -p "$ROOT/work/out" "$ROOT/work/models"
  chroot_dirs=""
  for dir in "${MODEL_DIRS[@]}"; do
    cp -rL "$dir" "$ROOT/work/models/$(basename "$dir")"
    chroot_dirs="$chroot_dirs /work/models/$(basename "$dir")"
  done
  cp "$CACHE/x86_64.npz" "$ROOT/work/x86_64.npz"
  log "aarch64 dump under QEMU_CPU=$cpu, on the host's scene frames and model inputs"
  if ! in_chroot "$cpu" sh -c "cd /src && $VENV/bin/python devices/ci/compare_outputs.py dump$chroot_dirs /work/out/aarch64.npz --frames $FRAMES --inputs /work/x86_64.npz"; then
    FAILED+=("$cpu: the aarch64 dump failed")
    continue
  fi
  cp "$ROOT/work/out/aarch64.npz" "$CACHE/aarch64-$cpu.npz"
  log "compare x86_64 vs aarch64 ($cpu), atol $ATOL, input path $INPUT_ATOL grey levels"
  if ! (cd "$REPO" && "$HOST_PY" devices/ci/compare_outputs.py compare "$CACHE/x86_64.npz" "$CACHE/aarch64-$cpu.npz" \
        --atol "$ATOL" --input-atol "$INPUT_ATOL" "${EXACT_ARGS[@]}"); then
    FAILED+=("$cpu: outputs differ (see MISMATCH lines above)")
  fi
done

if [ "${#FAILED[@]}" -gt 0 ]; then
  log "FAILED: ${FAILED[*]}"
  exit 1
fi
log "OK: aarch64 ($CPUS) matches x86_64 within atol $ATOL (input path $INPUT_ATOL grey levels)"
