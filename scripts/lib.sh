# Shared helpers for the scripts in this folder. Source it, do not run it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# It sets CANOPY_ROOT (the repository root) and defines small functions; it
# exports nothing.

CANOPY_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
CANOPY_VENV="$CANOPY_ROOT/.venv"
CANOPY_VENV_PY="$CANOPY_VENV/bin/python"
# The RetinaNet parity tests' venv (torch, torchvision: scripts/requirements-torch.txt).
CANOPY_TORCH_VENV="$CANOPY_ROOT/.venv-torch"
CANOPY_TORCH_PY="$CANOPY_TORCH_VENV/bin/python"

# say MSG...: progress line on stderr, prefixed with the calling script's name.
say() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }

# die MSG...: error line on stderr, then exit 1.
die() { printf '[%s] ERROR: %s\n' "$(basename "$0" .sh)" "$*" >&2; exit 1; }

# canopy_jobs: parallel build jobs (nproc, overridable with CANOPY_JOBS).
canopy_jobs() { echo "${CANOPY_JOBS:-$(nproc 2>/dev/null || echo 2)}"; }

# canopy_build DIR [CMAKE ARGS...]: configure (RelWithDebInfo unless the args
# say otherwise) and build the project in DIR.
canopy_build() {
  local dir=$1; shift
  cmake -S "$CANOPY_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >&2 ||
    return 1
  cmake --build "$dir" -j"$(canopy_jobs)" >&2
}
