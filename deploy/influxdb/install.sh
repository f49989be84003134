#!/usr/bin/env bash
# Build the InfluxDB OSS server (influxd) from the Go module proxy and cache it outside the repository.
#
# Usage:  deploy/influxdb/install.sh            # prints the path of the cached influxd on its last line
# Env:    INFLUXDB_VERSION  (default 2.7.12)    WATTLINE_CACHE (default ~/.cache/wattline)
#         GO (default: go on PATH, else /usr/local/go/bin/go)
#
# Idempotent: when the cached binary exists and runs, the script exits in well under a second.
# A cold build of 2.7.x takes ~25-35 min on 2 cores (libflux in Rust + the Go server); see README.md.
#
# Why not a prebuilt binary or Debian's package: this machine reaches only package registries, and Debian's
# influxdb is 1.6.7, which has neither /api/v2/write nor /api/v2/query, so influxdb-client cannot talk to it.
set -euo pipefail

VERSION="${INFLUXDB_VERSION:-2.7.12}"
CACHE_ROOT="${WATTLINE_CACHE:-$HOME/.cache/wattline}"
DEST="$CACHE_ROOT/influxdb/$VERSION"
BIN="$DEST/influxd"
LOG="$DEST/build.log"

log() { printf '[influxdb/install] %s\n' "$*" >&2; }

# Fast path: a second run takes seconds (here: milliseconds).
if [[ -x "$BIN" ]] && "$BIN" version >/dev/null 2>&1; then
    log "cached: $BIN ($("$BIN" version 2>/dev/null | head -1))"
    echo "$BIN"
    exit 0
fi

if [[ -z "${GO:-}" ]]; then
    if command -v go >/dev/null 2>&1; then GO="$(command -v go)"; else GO=/usr/local/go/bin/go; fi
fi
[[ -x "$GO" ]] || { log "Go not found (set GO=/path/to/go); Go >= 1.23 is needed"; exit 1; }
export PATH="$(dirname "$GO"):$HOME/.cargo/bin:$PATH"

# C toolchain and the system pkg-config (influxdata's wrapper delegates to it) come from Debian.
missing=()
command -v gcc >/dev/null 2>&1 || missing+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing ${missing[*]} with apt-get"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    else
        log "missing ${missing[*]}: install them (apt-get install ${missing[*]})"; exit 1
    fi
fi
command -v cargo >/dev/null 2>&1 || { log "cargo not found: Rust (rustup, stable toolchain) is needed for libflux"; exit 1; }

mkdir -p "$DEST/tools"
: >"$LOG"
start=$(date +%s)

# Never let go fetch a different Go toolchain (that would be a binary download); the local Go is newer
# than the go.mod's toolchain line anyway.
export GOTOOLCHAIN=local

MODULE=github.com/influxdata/influxdb/v2
case "$VERSION" in
2.*)
    # Which flux and pkg-config versions this influxd pins.
    MODDIR="$("$GO" mod download -json "$MODULE@v$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
    FLUX_VER="$(awk '$1=="github.com/influxdata/flux"{print $2; exit}' "$MODDIR/go.mod")"
    PKGCFG_VER="$(awk '$1=="github.com/influxdata/pkg-config"{print $2; exit}' "$MODDIR/go.mod")"
    log "influxd v$VERSION needs flux $FLUX_VER, pkg-config wrapper $PKGCFG_VER"

    # influxdata's pkg-config wrapper: when cgo asks for "flux" it runs `cargo build --release` in libflux and
    # writes a flux.pc pointing at the static library. Use the version influxd pins (@latest resolves to an
    # older tag, v0.2.7, on the proxy).
    GOBIN="$DEST/tools" "$GO" install "github.com/influxdata/pkg-config@$PKGCFG_VER" >>"$LOG" 2>&1
    export PKG_CONFIG="$DEST/tools/pkg-config"

    # Trap 1: flux's libflux/rust-toolchain.toml pins Rust 1.72 plus extra targets, which rustup would try to
    # download (not reachable here). Force the installed stable toolchain.
    export RUSTUP_TOOLCHAIN="${RUSTUP_TOOLCHAIN:-stable}"

    # Trap 1b: lints added to Rust since 1.72 warn about libflux's code; see the deny(warnings) patch below.
    export RUSTFLAGS="${RUSTFLAGS:-} --cap-lints warn"

    # Trap 2: the module cache is read-only, so the wrapper builds libflux in a writable copy at
    # $GOCACHE/pkgconfig/github.com/influxdata/flux@<ver> (it reuses that copy when it exists). We create the
    # copy ourselves so we can patch Cargo.lock before the wrapper runs cargo.
    GOCACHE_DIR="$("$GO" env GOCACHE)"
    FLUXMOD="$("$GO" mod download -json "github.com/influxdata/flux@$FLUX_VER" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
    FLUXCOPY="$GOCACHE_DIR/pkgconfig/github.com/influxdata/flux@$FLUX_VER"
    if [[ ! -f "$FLUXCOPY/.wattline-patched" ]]; then
        rm -rf "$FLUXCOPY"
        mkdir -p "$(dirname "$FLUXCOPY")"
        cp -r "$FLUXMOD" "$FLUXCOPY"
        chmod -R u+w "$FLUXCOPY"
        # Trap 3: old crates in flux's Cargo.lock do not compile with today's Rust; pin newer compatible patch
        # releases in the copy (only crates that are actually in the lock file; each is semver-compatible).
        #   time < 0.3.35 fails type inference on Rust >= 1.80 ("type annotations needed for Box<_>").
        while read -r crate precise; do
            if grep -q "^name = \"$crate\"$" "$FLUXCOPY/libflux/Cargo.lock"; then
                log "cargo update -p $crate --precise $precise (old $crate does not build on Rust $(rustc --version | cut -d' ' -f2))"
                (cd "$FLUXCOPY/libflux" && cargo update -p "$crate" --precise "$precise") >>"$LOG" 2>&1
            fi
        done <<'EOF'
time 0.3.36
EOF
        # Trap 3b: flux-core and flux say #![cfg_attr(feature = "strict", deny(warnings, missing_docs))], so lints
        # added to Rust since 1.72 ("hiding a lifetime that's elided elsewhere", dead_code on never-constructed
        # structs) are hard errors. RUSTFLAGS=--cap-lints does not reach flux-core when it is built for the host as
        # flux's build-dependency (cargo applies RUSTFLAGS only to --target artifacts), so demote deny to warn in
        # the copy's source.
        sed -i 's/deny(warnings, missing_docs)/warn(warnings, missing_docs)/' \
            "$FLUXCOPY/libflux/flux-core/src/lib.rs" "$FLUXCOPY/libflux/flux/src/lib.rs"
        touch "$FLUXCOPY/.wattline-patched"
    fi

    # Trap 4: Go >= 1.23 rejects //go:linkname references into the standard library that old dependencies
    # still use; -checklinkname=0 lifts that linker check.
    # Build tags are the ones influxdata's GNUmakefile uses (without "assets": no UI bundle is needed).
    # Trap 5: `go install .../cmd/influxd@v2.7.x` refuses modules whose go.mod has replace directives
    # (influxdb replaces nats-streaming-server), so build with influxdb as the main module, from a writable
    # copy of its module source (the module cache is read-only and go may need to touch go.sum).
    SRC="$DEST/src"
    rm -rf "$SRC"; cp -r "$MODDIR" "$SRC"; chmod -R u+w "$SRC"
    log "building influxd v$VERSION (log: $LOG); this takes a while on 2 cores"
    (cd "$SRC" && nice -n 10 "$GO" build -mod=mod -o "$BIN.tmp" \
        -tags 'sqlite_foreign_keys,sqlite_json' \
        -ldflags "-checklinkname=0 -X main.version=$VERSION -X main.commit=go-module-proxy" \
        ./cmd/influxd) >>"$LOG" 2>&1 || {
        tail -40 "$LOG" >&2; log "build failed; full log in $LOG"; exit 1; }
    mv "$BIN.tmp" "$BIN"
    rm -rf "$SRC"
    ;;
1.*)
    # Fallback: pure Go 1.8.x (Flux endpoints via flux-enabled = true in start.sh).
    log "building influxd v$VERSION (log: $LOG)"
    GOBIN="$DEST" nice -n 10 "$GO" install -ldflags "-checklinkname=0 -X main.version=$VERSION" \
        "github.com/influxdata/influxdb/cmd/influxd@v$VERSION" >>"$LOG" 2>&1 || {
        tail -40 "$LOG" >&2; log "build failed; full log in $LOG"; exit 1; }
    ;;
*) log "unsupported INFLUXDB_VERSION=$VERSION (use 2.7.x, or 1.8.10 as fallback)"; exit 1 ;;
esac

"$BIN" version >/dev/null 2>&1 || { log "built $BIN but it does not run"; exit 1; }
secs=$(( $(date +%s) - start ))
echo "$secs" >"$DEST/build-seconds"
log "built $BIN in ${secs}s"
echo "$BIN"
