# Sourced by bench/retina.sh, retina_full.sh and retina_patch.sh: scripts/lib.sh
# and the environment they share (see each script's header).
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
BUILD_DIR=${CANOPY_BUILD_DIR:-$CANOPY_ROOT/build}
PY=${CANOPY_TORCH_PYTHON:-$CANOPY_ROOT/.venv-torch/bin/python}
NEON=${CANOPY_NEON_DIR:-$CANOPY_ROOT/tests/data/neon}
MAKE_FIXTURE=${CANOPY_MAKE_FIXTURE:-$CANOPY_ROOT/tools/deepforest/make_fixture.py}
