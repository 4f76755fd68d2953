#!/usr/bin/env bash
# Idempotent set-up for a Debian 12 machine: installs the Debian packages the
# build, the tests and the local stack need (only when one is missing), then a
# Python venv at .venv with the pinned test packages (only when not satisfied),
# and with --torch one at .venv-torch with torch + torchvision (several GB) for
# the RetinaNet parity tests and tools/deepforest (likewise). The demo does
# not need torch: scripts/demo.sh runs it without --torch, scripts/test.sh
# with it.
#
#   scripts/bootstrap.sh [--torch] [--check]
#
#   --torch   also the .venv-torch venv
#   --check   check the prerequisites and print what would be set up; change
#             nothing
#
# Before anything is installed it checks the prerequisites and stops with a
# message saying what is wrong: Debian 12 (apt-get, dpkg), root or sudo when
# a package is missing, and free disk space (CANOPY_MIN_FREE_MB overrides
# the amount; CANOPY_OS_RELEASE the os-release file read, for tests).
# Runs as root, or through sudo otherwise. Exports nothing.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

torch=0
check=0
while [ $# -gt 0 ]; do
  case "$1" in
    --torch) torch=1 ;;
    --check) check=1 ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
  shift
done

DEB_PACKAGES=(
  build-essential cmake pkg-config git
  ocl-icd-opencl-dev opencl-headers ocl-icd-libopencl1 pocl-opencl-icd clinfo
  libclblast-dev libcurl4-openssl-dev libpng-dev zlib1g-dev libpq-dev
  libinih-dev libcjson-dev libexpat1-dev libssl-dev libdnnl-dev
  postgresql-15 postgresql-client-15 postgresql-15-postgis-3
  libgdal-dev gdal-bin
  clang libclang-rt-14-dev oclgrind
  python3 python3-venv python3-pip curl
)
REQUIREMENTS="$CANOPY_ROOT/scripts/requirements-test.txt"
TORCH_REQUIREMENTS="$CANOPY_ROOT/scripts/requirements-torch.txt"

# missing_packages: prints the Debian packages of DEB_PACKAGES not installed.
missing_packages() {
  local pkg status
  for pkg in "${DEB_PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = installed ] || echo "$pkg"
  done
}

# check_prerequisites: stops (exit 1) with a message naming what is wrong
# before anything is installed or built.
check_prerequisites() {
  local osr=${CANOPY_OS_RELEASE:-/etc/os-release} id= ver= name=
  if [ -r "$osr" ]; then
    id=$(. "$osr" && echo "${ID:-}")
    ver=$(. "$osr" && echo "${VERSION_ID:-}")
    name=$(. "$osr" && echo "${PRETTY_NAME:-$ID $VERSION_ID}")
  fi
  if [ "$id" != debian ] || [ "$ver" != 12 ]; then
    die "prerequisite: this needs Debian 12 (bookworm); found ${name:-an unknown system ($osr unreadable)}." \
        "The packages it installs (DEB_PACKAGES in scripts/bootstrap.sh) are Debian 12's."
  fi
  command -v apt-get >/dev/null && command -v dpkg-query >/dev/null ||
    die "prerequisite: apt-get and dpkg-query not found (Debian 12 has them)"
  # Debian packages, the build trees, .venv; torch's wheels add about 5 GB.
  local need=${CANOPY_MIN_FREE_MB:-$((torch ? 9000 : 3000))} free
  free=$(df -Pm "$CANOPY_ROOT" | awk 'NR == 2 { print $4 }')
  [ "${free:-0}" -ge "$need" ] ||
    die "prerequisite: $need MB of free disk space needed under $CANOPY_ROOT ($( [ $torch = 1 ] &&
        echo 'Debian packages, builds, .venv and .venv-torch' || echo 'Debian packages, builds and .venv')), ${free:-0} MB free"
  local missing
  missing=$(missing_packages)
  if [ -n "$missing" ] && [ "$(id -u)" -ne 0 ] && ! command -v "${CANOPY_SUDO:-sudo}" >/dev/null; then
    die "prerequisite: $(echo "$missing" | wc -l) Debian package(s) to install ($(echo $missing))" \
        "and neither root nor sudo: run as root or install sudo"
  fi
  say "prerequisites: $name, ${free} MB free (need $need), $( [ "$(id -u)" -eq 0 ] && echo root || echo "${CANOPY_SUDO:-sudo}")"
  say "plan: Debian packages ($( [ -z "$missing" ] && echo 'all installed' || echo "$(echo "$missing" | wc -l) to install")), $CANOPY_VENV$( [ $torch = 1 ] && echo ", $CANOPY_TORCH_VENV (torch, a few GB)")"
}

# as_root CMD...: runs CMD as root (directly, or with sudo).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v "${CANOPY_SUDO:-sudo}" >/dev/null; then
    "${CANOPY_SUDO:-sudo}" "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

install_debian_packages() {
  local missing
  missing=$(missing_packages)
  if [ -z "$missing" ]; then
    say "Debian packages: all ${#DEB_PACKAGES[@]} installed"
    return 0
  fi
  say "Debian packages missing: $(echo $missing)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update
  # shellcheck disable=SC2086  # word splitting of the package list is intended
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
  missing=$(missing_packages)
  [ -z "$missing" ] || die "still missing after apt-get install: $(echo $missing)"
}

# venv_satisfied PY REQUIREMENTS MODULES: true when the venv's interpreter
# PY exists, has every pin of REQUIREMENTS (extras ignored; a local version
# suffix such as +cu124 or +cpu counts as the pinned version) and imports
# MODULES (comma-separated).
venv_satisfied() {
  [ -x "$1" ] || return 1
  "$1" - "$2" "$3" <<'EOF' 2>/dev/null
import importlib, sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split('#', 1)[0].strip()
    if not line:
        continue
    name, _, pinned = line.partition('==')
    name = name.split('[', 1)[0]
    try:
        if version(name).split('+', 1)[0] != pinned:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
for module in sys.argv[2].split(','):
    importlib.import_module(module)
EOF
}

# setup_venv VENV REQUIREMENTS MODULES [NOTE]: creates VENV (from the system
# interpreter, not whatever python3 a shell's PATH finds) and installs
# REQUIREMENTS, only when venv_satisfied says it must.
setup_venv() {
  local venv=$1 req=$2 modules=$3 note=${4:-} start=$SECONDS
  local vpy="$venv/bin/python"
  if venv_satisfied "$vpy" "$req" "$modules"; then
    say "Python venv: $venv up to date"
    return 0
  fi
  local py=/usr/bin/python3
  [ -x "$py" ] || py=$(command -v python3)
  if [ ! -x "$vpy" ]; then
    say "Python venv: creating $venv"
    "$py" -m venv "$venv"
  fi
  say "Python venv: installing $(basename "$req")${note:+ ($note)}"
  "$vpy" -m pip install --quiet --disable-pip-version-check -r "$req"
  venv_satisfied "$vpy" "$req" "$modules" ||
    die "Python venv $venv does not satisfy $req after pip install"
  say "Python venv: $venv installed in $((SECONDS - start)) s"
}

check_prerequisites
[ $check = 0 ] || exit 0
install_debian_packages
# moto[server] needs flask and flask_cors besides its own pin.
setup_venv "$CANOPY_VENV" "$REQUIREMENTS" flask,flask_cors,boto3,moto
if [ $torch = 1 ]; then
  setup_venv "$CANOPY_TORCH_VENV" "$TORCH_REQUIREMENTS" torch,torchvision,safetensors,numpy,PIL \
    "torch: a few GB"
fi
say "bootstrap done"
