#!/usr/bin/env bash
# Idempotent set-up for a Debian 12 machine: installs the Debian packages the
# build, the tests and the local stack need (only when one is missing), then a
# Python venv at .venv with the pinned test packages (only when not satisfied),
# and one at .venv-torch with torch + torchvision for the RetinaNet parity tests
# (likewise).
# Runs as root, or through sudo otherwise. Exports nothing.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEB_PACKAGES=(
  build-essential cmake pkg-config git
  ocl-icd-opencl-dev opencl-headers ocl-icd-libopencl1 pocl-opencl-icd clinfo
  libclblast-dev libcurl4-openssl-dev libpng-dev zlib1g-dev libpq-dev
  libinih-dev libcjson-dev libexpat1-dev libssl-dev
  postgresql-15 postgresql-client-15 postgresql-15-postgis-3
  libgdal-dev gdal-bin
  clang libclang-rt-14-dev
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

# as_root CMD...: runs CMD as root (directly, or with sudo).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
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

# venv_satisfied: true when .venv exists and has every pinned requirement.
venv_satisfied() {
  [ -x "$CANOPY_VENV_PY" ] || return 1
  "$CANOPY_VENV_PY" - "$REQUIREMENTS" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split('#', 1)[0].strip()
    if not line:
        continue
    name, _, pinned = line.partition('==')
    name = name.split('[', 1)[0]
    try:
        if version(name) != pinned:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
# moto[server] extras: the server needs flask and flask_cors.
import flask, flask_cors, boto3, moto  # noqa: F401
EOF
}

setup_venv() {
  if venv_satisfied; then
    say "Python venv: $CANOPY_VENV up to date"
    return 0
  fi
  # The system interpreter, not whatever python3 a shell's PATH (pyenv...) finds.
  local py=/usr/bin/python3
  [ -x "$py" ] || py=$(command -v python3)
  if [ ! -x "$CANOPY_VENV_PY" ]; then
    say "Python venv: creating $CANOPY_VENV"
    "$py" -m venv "$CANOPY_VENV"
  fi
  say "Python venv: installing $(basename "$REQUIREMENTS")"
  "$CANOPY_VENV_PY" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  venv_satisfied || die "Python venv $CANOPY_VENV does not satisfy $REQUIREMENTS after pip install"
}

# torch_venv_satisfied: true when .venv-torch has every pin of
# requirements-torch.txt (a local version suffix such as +cu124 or +cpu counts
# as the pinned version) and imports.
torch_venv_satisfied() {
  [ -x "$CANOPY_TORCH_PY" ] || return 1
  "$CANOPY_TORCH_PY" - "$TORCH_REQUIREMENTS" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split('#', 1)[0].strip()
    if not line:
        continue
    name, _, pinned = line.partition('==')
    try:
        if version(name).split('+', 1)[0] != pinned:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
import torch, torchvision, safetensors, numpy, PIL  # noqa: F401
EOF
}

setup_torch_venv() {
  if torch_venv_satisfied; then
    say "Python venv: $CANOPY_TORCH_VENV up to date"
    return 0
  fi
  local py=/usr/bin/python3 start=$SECONDS
  [ -x "$py" ] || py=$(command -v python3)
  if [ ! -x "$CANOPY_TORCH_PY" ]; then
    say "Python venv: creating $CANOPY_TORCH_VENV"
    "$py" -m venv "$CANOPY_TORCH_VENV"
  fi
  say "Python venv: installing $(basename "$TORCH_REQUIREMENTS") (torch: a few GB)"
  "$CANOPY_TORCH_PY" -m pip install --quiet --disable-pip-version-check -r "$TORCH_REQUIREMENTS"
  torch_venv_satisfied ||
    die "Python venv $CANOPY_TORCH_VENV does not satisfy $TORCH_REQUIREMENTS after pip install"
  say "Python venv: $CANOPY_TORCH_VENV installed in $((SECONDS - start)) s"
}

install_debian_packages
setup_venv
setup_torch_venv
say "bootstrap done"
