#!/usr/bin/env bash
# Sets up a fresh machine (idempotent) and runs one job:
#   ./dev.sh demo    the main job: default model -> default board -> QEMU -> report
#   ./dev.sh test    the whole test suite (simulator tests included)
# Extra arguments go to the job (e.g. ./dev.sh test -m "not slow").
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(gcc g++ make cmake ninja-build gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm stm32flash python3 python3-venv python3-dev chromium dataset-fashion-mnist espeak-ng sox)
VENV=.venv

missing_apt() {
  local missing=()
  command -v gcc >/dev/null || missing+=(gcc)
  command -v g++ >/dev/null || missing+=(g++)   # tests: the Arduino sketch is C++
  command -v make >/dev/null || missing+=(make)
  command -v cmake >/dev/null || missing+=(cmake)
  command -v ninja >/dev/null || missing+=(ninja-build)
  command -v arm-none-eabi-gcc >/dev/null || missing+=(gcc-arm-none-eabi libnewlib-arm-none-eabi)
  [ -n "$(find /usr/lib/arm-none-eabi -name libc_nano.a 2>/dev/null | head -1)" ] || missing+=(libnewlib-arm-none-eabi)
  command -v qemu-system-arm >/dev/null || missing+=(qemu-system-arm)
  command -v stm32flash >/dev/null || missing+=(stm32flash)
  command -v chromium >/dev/null || missing+=(chromium)  # the HTML report tests drive it headless
  # tinyml search's offline tasks: Fashion-MNIST, and keyword clips synthesized with espeak-ng + sox
  [ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] || missing+=(dataset-fashion-mnist)
  command -v espeak-ng >/dev/null || missing+=(espeak-ng)
  command -v sox >/dev/null || missing+=(sox)
  command -v python3 >/dev/null || missing+=(python3 python3-venv python3-dev)
  python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
  echo "${missing[@]:-}"
}

setup_system() {
  local missing; missing=$(missing_apt)
  [ -z "${missing// /}" ] && return 0
  echo "==> installing system packages: $missing"
  local SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "need root or sudo to install: $missing" >&2; exit 2; }
    SUDO=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

setup_python() {
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  local stamp="$VENV/.installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "==> installing tinyml and its test/oracle dependencies into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".[oracle,zoo,test,quantize,onnx,train,search]"
    touch "$stamp"
  fi
}

job=${1:-}
[ $# -gt 0 ] && shift
case "$job" in
  demo) setup_system; setup_python; exec "$VENV/bin/tinyml" demo "$@" ;;
  test) setup_system; setup_python; exec "$VENV/bin/python" -m pytest -n "${TINYML_TEST_JOBS:-auto}" -q "$@" ;;
  setup) setup_system; setup_python ;;
  *) echo "usage: ./dev.sh demo|test|setup [args...]" >&2; exit 2 ;;
esac
