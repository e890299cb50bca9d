#!/usr/bin/env bash
# Build the real Kubernetes API server pieces tfms's tests run against (see k8s/README.md):
#   CACHE/bin/kube-apiextensions-apiserver  k8s/main.go built against Debian sid's Go sources
#   CACHE/bin/etcd                          etcd from sid's etcd-server package
#   CACHE/bin/kubectl                       a link to the system's kubectl, or sid's kubectl
#
# Usage: bash k8s/bootstrap.sh [CACHE_DIR]      (default ${TFMS_K8S_CACHE:-$HOME/.cache/tfms-k8s})
# Env:   TFMS_K8S_KEEP_WORK=1   keep the unpacked debs and GOCACHE after a build (for debugging)
#        TFMS_K8S_SID_KUBECTL=1 use sid's kubectl even when one is on PATH
#
# Idempotent: when the binaries exist and were built from this exact recipe (sha256 of this
# script and main.go) it exits 0 at once. Downloads use a private apt configuration under
# CACHE/work and unpack with `dpkg -x`: the system's apt and dpkg state are never touched.
# sid cannot be pinned (deb.debian.org keeps only the current version), so the cache is what
# keeps a working build; CACHE/versions.txt records which package versions made it.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${1:-${TFMS_K8S_CACHE:-$HOME/.cache/tfms-k8s}}
BIN=$CACHE/bin
WORK=$CACHE/work
APISERVER=kube-apiextensions-apiserver
START=$SECONDS

log() { printf '[k8s bootstrap +%3ss] %s\n' "$((SECONDS - START))" "$*"; }
die() { printf '[k8s bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }
on_error() {
    local rc=$?
    printf '[k8s bootstrap] ERROR: command failed (exit %s) at line %s: %s\n' "$rc" "$1" "$2" >&2
    exit "$rc"
}
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR

# Run a noisy command with its output in WORK/logs/NAME.log; on failure show the log's tail.
quiet() {
    local name=$1; shift
    mkdir -p "$WORK/logs"
    if ! "$@" >"$WORK/logs/$name.log" 2>&1; then
        tail -n 40 "$WORK/logs/$name.log" >&2
        die "$name failed: $* (full log: $WORK/logs/$name.log)"
    fi
}

for tool in apt-get apt-cache dpkg dpkg-deb flock sha256sum; do
    command -v "$tool" >/dev/null || die "'$tool' not found; this needs a Debian-based machine"
done
mkdir -p "$CACHE"
RECIPE=$(cat "$HERE/main.go" "$HERE/bootstrap.sh" | sha256sum | cut -d' ' -f1)

exec 9>"$CACHE/.lock"
if ! flock -n 9; then
    log "another bootstrap holds $CACHE/.lock; waiting for it"
    flock 9
fi

built() {
    [ -x "$BIN/$APISERVER" ] && [ -x "$BIN/etcd" ] && [ "$(cat "$CACHE/recipe" 2>/dev/null)" = "$RECIPE" ]
}
kubectl_ok() {  # -x follows the link, so a removed system kubectl counts as missing
    [ -x "$BIN/kubectl" ] && { [ -z "${TFMS_K8S_SID_KUBECTL:-}" ] || [ ! -L "$BIN/kubectl" ]; }
}
if built && kubectl_ok; then
    log "up to date in $BIN (recipe ${RECIPE:0:12})"
    exit 0
fi

# --- private apt for sid ------------------------------------------------------------------
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$KEYRING" ] || die "$KEYRING missing (package debian-archive-keyring)"
APT=$WORK/apt
APT_OPTS=(
    -o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache"
    -o "Dir::State::status=$APT/status" -o "APT::Architecture=$(dpkg --print-architecture)"
    -o APT::Sandbox::User=root -o Debug::NoLocking=1
)
apt_update() {
    mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial"
    : >"$APT/status"  # empty: resolve the whole closure, as if nothing were installed
    echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian sid main" >"$APT/sources.list"
    log "apt-get update (sid, private lists in $APT)"
    quiet apt-update apt-get "${APT_OPTS[@]}" update
}

# A kubectl for the tests: the system's when there is one, else sid's (kubectl only needs libc).
want_sid_kubectl() { [ -n "${TFMS_K8S_SID_KUBECTL:-}" ] || ! command -v kubectl >/dev/null; }
install_kubectl() {  # $1: a directory holding sid's kubectl_*.deb when want_sid_kubectl
    rm -f "$BIN/kubectl"
    if want_sid_kubectl; then
        local deb tmp
        deb=$(ls "$1"/kubectl_*.deb)
        tmp=$(mktemp -d "$WORK/kubectl.XXXX")
        dpkg -x "$deb" "$tmp"
        install -m 0755 "$tmp/usr/bin/kubectl" "$BIN/kubectl"
        rm -rf "$tmp"
        log "kubectl: sid's $(dpkg-deb -f "$deb" Version) -> $BIN/kubectl"
    else
        ln -s "$(command -v kubectl)" "$BIN/kubectl"
        log "kubectl: using the system's $(command -v kubectl)"
    fi
}

if built; then  # only kubectl is missing (e.g. the system's was removed)
    mkdir -p "$WORK/kdeb"
    if want_sid_kubectl; then
        apt_update
        (cd "$WORK/kdeb" && quiet apt-download apt-get "${APT_OPTS[@]}" download kubectl)
    fi
    install_kubectl "$WORK/kdeb"
    rm -rf "$WORK"
    exit 0
fi

log "building into $CACHE (recipe ${RECIPE:0:12}); from scratch this takes about 4 minutes on 2 cores"
AVAIL_KB=$(df -Pk "$CACHE" | awk 'NR == 2 {print $4}')
[ "$AVAIL_KB" -ge $((6 * 1024 * 1024)) ] || die "need ~6 GB free under $CACHE for the build, have $((AVAIL_KB / 1024)) MB"
rm -rf "$WORK/root" "$WORK/out" "$WORK/debs"
mkdir -p "$WORK/debs" "$WORK/root" "$WORK/out" "$WORK/logs" "$BIN"
apt_update

# --- the closure: every Go source package apiextensions-apiserver needs, the Go toolchain,
# etcd, and (if needed) kubectl
log "resolving the dependency closure of golang-k8s-apiextensions-apiserver-dev"
CLOSURE=$(apt-cache "${APT_OPTS[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances golang-k8s-apiextensions-apiserver-dev) \
    || die "apt-cache depends failed: is golang-k8s-apiextensions-apiserver-dev still in sid?"
mapfile -t GO_DEVS < <(grep -E '^golang-.*-dev$' <<<"$CLOSURE" | sort -u)
[ "${#GO_DEVS[@]}" -gt 100 ] || die "closure has only ${#GO_DEVS[@]} golang-*-dev packages; sid changed?"
GO_PKG=$(apt-cache "${APT_OPTS[@]}" depends golang-go | awk '$1 == "Depends:" && $2 ~ /^golang-[0-9.]+-go$/ {print $2; exit}')
[ -n "$GO_PKG" ] || die "cannot tell which golang-1.NN-go sid's golang-go depends on"
GO_VER=${GO_PKG#golang-}; GO_VER=${GO_VER%-go}
EXTRA=("$GO_PKG" "golang-$GO_VER-src" etcd-server)
want_sid_kubectl && EXTRA+=(kubectl)
log "downloading ${#GO_DEVS[@]} Go source packages + ${EXTRA[*]}"
(cd "$WORK/debs" && quiet apt-download apt-get "${APT_OPTS[@]}" download "${GO_DEVS[@]}" "${EXTRA[@]}")
log "downloaded $(find "$WORK/debs" -name '*.deb' | wc -l) debs, $(du -sh "$WORK/debs" | cut -f1)"

{
    echo "# Debian sid packages that built this cache, $(date -u +%Y-%m-%dT%H:%M:%SZ), recipe $RECIPE"
    for deb in "$WORK"/debs/*.deb; do dpkg-deb -f "$deb" Package Version | paste -sd' '; done
} >"$WORK/out/versions.txt"

log "unpacking with dpkg -x into $WORK/root"
for deb in "$WORK"/debs/*.deb; do
    case $(basename "$deb") in kubectl_*) continue ;; esac
    dpkg -x "$deb" "$WORK/root" || die "dpkg -x $deb failed"
done
log "unpacked $(du -sh "$WORK/root" | cut -f1)"

# --- build ----------------------------------------------------------------------------------
EXT_VER=$(dpkg-deb -f "$WORK"/debs/golang-k8s-apiextensions-apiserver-dev_*.deb Version)
EXT_VER=${EXT_VER%%-*}; EXT_VER=${EXT_VER#*:}   # 0.36.4-1 -> 0.36.4
IFS=. read -r _ KMINOR KPATCH <<<"$EXT_VER"
KVERSION="v1.$KMINOR.${KPATCH%%[!0-9]*}"
export GOROOT=$WORK/root/usr/lib/go-$GO_VER GOPATH=$WORK/root/usr/share/gocode GOCACHE=$WORK/gocache
export GO111MODULE=off GOFLAGS='' GOTOOLCHAIN=local GOPROXY=off GOSUMDB=off GOENV=off CGO_ENABLED=0
export PATH=$GOROOT/bin:$PATH
[ -x "$GOROOT/bin/go" ] || die "no go binary at $GOROOT/bin/go"
V=k8s.io/component-base/version
LDFLAGS="-s -w -X $V.gitVersion=$KVERSION -X $V.gitMajor=1 -X $V.gitMinor=$KMINOR -X $V.gitTreeState=clean"
log "go build ($(go version | cut -d' ' -f3), apiextensions-apiserver $EXT_VER as $KVERSION); cold: ~3 minutes, ~1.3 GB RAM"
if ! (cd "$HERE" && go build -trimpath -ldflags "$LDFLAGS" -o "$WORK/out/$APISERVER" main.go) >"$WORK/logs/go-build.log" 2>&1; then
    tail -n 40 "$WORK/logs/go-build.log" >&2
    die "go build failed (full log: $WORK/logs/go-build.log). If main.go is unchanged, sid is probably
    mid-transition (one Go package bumped before the others): compare $WORK/out/versions.txt with
    $CACHE/versions.txt of the last good build, retry in a day, or restore a cached $BIN."
fi
install -m 0755 "$WORK/root/usr/bin/etcd" "$WORK/out/etcd"

log "smoke-testing the binaries"
quiet apiserver-help "$WORK/out/$APISERVER" --help
grep -q -- '--test-allow-all' "$WORK/logs/apiserver-help.log" || die "built apiserver lacks --test-allow-all"
quiet etcd-version "$WORK/out/etcd" --version

# --- install: replace bin/ wholesale, record the recipe last ----------------------------------
rm -f "$CACHE/recipe"
rm -rf "$CACHE/bin.new"
mkdir -p "$CACHE/bin.new"
mv "$WORK/out/$APISERVER" "$WORK/out/etcd" "$CACHE/bin.new/"
rm -rf "$BIN"
mv "$CACHE/bin.new" "$BIN"
mv "$WORK/out/versions.txt" "$CACHE/versions.txt"
install_kubectl "$WORK/debs"
echo "$RECIPE" >"$CACHE/recipe"

if [ -n "${TFMS_K8S_KEEP_WORK:-}" ]; then
    log "keeping $WORK ($(du -sh "$WORK" | cut -f1)) because TFMS_K8S_KEEP_WORK is set"
else
    rm -rf "$WORK"
fi
log "done: $(du -sh "$BIN" | cut -f1) in $BIN ($(grep -vc '^#' "$CACHE/versions.txt") packages, see versions.txt)"
