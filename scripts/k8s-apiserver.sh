#!/usr/bin/env bash
# Builds the real Kubernetes API server of the kubernetes tests and prints the binary's path.
#
# No kube-apiserver, kind, k3s or envtest binary can be installed on a plain Debian machine
# without Docker or the Go module proxy, but the upstream apiextensions-apiserver (the CRD server
# kube-apiserver embeds: CRDs, custom objects, label selectors, resourceVersion, watch with
# bookmarks, merge-patch, 410 Gone) builds from Debian sid's Go source packages in GOPATH mode
# (../shared recipe "kubernetes-test-apiserver"). It runs over Debian's etcd-server, installed here too.
#
# The build (~320 .deb, ~325 MB, ~4 min on 2 cores) happens once: the binary is cached under
# $WOT_AGENTS_CACHE/k8s-apiserver/<key>/ where <key> hashes the exact package versions it was built
# from. Later runs reuse the newest cached build without touching the network; K8S_APISERVER_REFRESH=1
# re-resolves sid and builds again if any version moved. apt runs with a private configuration
# (sources, lists, cache under the work folder), so the system's apt state is never touched.
# Any failure (sid moved and the build broke, a download failed) exits non-zero with the reason:
# the tests must fail loudly, never skip.
set -euo pipefail

CACHE=${WOT_AGENTS_CACHE:-$HOME/.cache/wot-agents}
BASE="$CACHE/k8s-apiserver"
ROOT_PACKAGES=(golang-k8s-apiextensions-apiserver-dev golang-1.27-go)
log() { printf '[k8s-apiserver] %s\n' "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

# --- etcd: Debian's etcd-server (3.4 on bookworm) ---------------------------------------------
if ! command -v etcd >/dev/null 2>&1 && [ ! -x /usr/bin/etcd ]; then
  log "installing Debian's etcd-server"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq || fail "apt-get update"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends etcd-server \
    >/dev/null || fail "apt-get install etcd-server"
  # The package starts a system etcd on the default ports: the tests start their own, on free ports.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
    $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
fi

# --- a cached build: reuse the newest unless asked to refresh -------------------------------
newest_cached() {
  local bin
  bin=$(ls -t "$BASE"/*/apiextensions-apiserver 2>/dev/null | head -n1 || true)
  [ -n "$bin" ] && [ -x "$bin" ] && printf '%s\n' "$bin"
}
if [ "${K8S_APISERVER_REFRESH:-0}" != 1 ] && bin=$(newest_cached); then
  printf '%s\n' "$bin"
  exit 0
fi

# --- private apt configuration on Debian sid --------------------------------------------------
WORK="$BASE/work"
mkdir -p "$WORK/lists/partial" "$WORK/cache/archives/partial" "$WORK/debs"
# The same mirror the machine uses (deb822 or one-line sources), suite sid.
MIRROR=$(grep -hoE '^URIs:[[:space:]]*[^[:space:]]+' /etc/apt/sources.list.d/*.sources 2>/dev/null \
  | awk '{print $2}' | grep -v security | head -n1 || true)
if [ -z "$MIRROR" ]; then
  MIRROR=$(grep -hoE '^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?[^[:space:]]+' /etc/apt/sources.list 2>/dev/null \
    | awk '{print $NF}' | grep -v security | head -n1 || true)
fi
MIRROR=${MIRROR:-http://deb.debian.org/debian}
printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s sid main\n' "$MIRROR" \
  >"$WORK/sources.list"
APT_OPTS=(
  -o "Dir::Etc::sourcelist=$WORK/sources.list"
  -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$WORK/lists"
  -o "Dir::Cache=$WORK/cache"
  -o "APT::Sandbox::User=root"
)
log "resolving ${ROOT_PACKAGES[*]} on sid ($MIRROR)"
apt-get "${APT_OPTS[@]}" -qq update || fail "apt-get update of the private sid lists"
mapfile -t PACKAGES < <(apt-cache "${APT_OPTS[@]}" depends --recurse --no-recommends --no-suggests \
  --no-conflicts --no-breaks --no-replaces --no-enhances "${ROOT_PACKAGES[@]}" \
  | grep -E '^golang-' | sort -u)
((${#PACKAGES[@]} > 10)) || fail "resolved only ${#PACKAGES[@]} packages: ${PACKAGES[*]:-none}"
# name=version of every package: the cache key.
VERSIONS=$(apt-cache "${APT_OPTS[@]}" show --no-all-versions "${PACKAGES[@]}" \
  | awk '/^Package: /{p=$2} /^Version: /{print p "=" $2}' | sort -u)
KEY=$(printf '%s\n' "$VERSIONS" | sha256sum | cut -c1-16)
OUT="$BASE/$KEY"
if [ -x "$OUT/apiextensions-apiserver" ]; then
  touch "$OUT/apiextensions-apiserver"
  printf '%s\n' "$OUT/apiextensions-apiserver"
  exit 0
fi

# --- download, unpack, build ------------------------------------------------------------------
log "downloading ${#PACKAGES[@]} Go source packages (~325 MB)"
rm -f "$WORK"/debs/*.deb
(cd "$WORK/debs" && apt-get "${APT_OPTS[@]}" -qq download $(printf '%s\n' "$VERSIONS")) \
  || fail "apt-get download"
ROOT="$WORK/root-$KEY"
rm -rf "$ROOT"
mkdir -p "$ROOT"
for deb in "$WORK"/debs/*.deb; do dpkg -x "$deb" "$ROOT" || fail "dpkg -x $deb"; done
GOROOT="$ROOT/usr/lib/go-1.27"
[ -x "$GOROOT/bin/go" ] || fail "no go toolchain in $GOROOT"
SRC="$ROOT/usr/share/gocode/src/k8s.io/apiextensions-apiserver"
[ -d "$SRC" ] || fail "no apiextensions-apiserver source in $SRC"
log "building apiextensions-apiserver (GOPATH mode, ~4 min on 2 cores)"
mkdir -p "$OUT.tmp"
(
  cd "$SRC"
  export GOROOT GOPATH="$ROOT/usr/share/gocode" GO111MODULE=off GOTOOLCHAIN=local CGO_ENABLED=0 \
    GOPROXY=off GOCACHE="$WORK/gocache"
  "$GOROOT/bin/go" build -o "$OUT.tmp/apiextensions-apiserver" .
) || fail "go build of apiextensions-apiserver (sid may have moved: see the compiler's message above)"
printf '%s\n' "$VERSIONS" >"$OUT.tmp/VERSIONS"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
# Keep only this build's sources out of the way: the binary is all the tests need.
rm -rf "$ROOT" "$WORK/debs" "$WORK/gocache"
log "built $OUT/apiextensions-apiserver"
printf '%s\n' "$OUT/apiextensions-apiserver"
