#!/usr/bin/env bash
# Re-fetches the front-end libraries the dashboard ships, from the npm registry only (no CDN), pinned to an
# exact version and checked against a pinned integrity, and writes a MANIFEST.json (version, sha256 of every
# shipped file) that tests/dashboard/test_vendor.py verifies. Byte-for-byte reproducible: nothing time-dependent.
#
# Usage: scripts/vendor-assets.sh          rewrite dashboard/static/vendor/<lib>/ from the registry
#        scripts/vendor-assets.sh --check  fetch into a temp dir and fail if it differs from what is committed
#
# To upgrade: change the version and integrity below (`npm view uplot@<v> dist.integrity`), run, commit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENDOR="$ROOT/dashboard/static/vendor"
MODE=${1:-write}
case "$MODE" in write | --check) ;; *) echo "usage: $0 [--check]" >&2; exit 2 ;; esac

command -v npm >/dev/null || { echo "npm is needed (apt-get install npm)" >&2; exit 1; }
command -v node >/dev/null || { echo "node is needed (apt-get install nodejs)" >&2; exit 1; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# vendor <dir> <package> <exact version> <sha512 integrity> <tarball path>=<shipped name>...
vendor() {
  local dir=$1 pkg=$2 version=$3 integrity=$4
  shift 4
  local work="$TMP/$dir"
  mkdir -p "$work/pack" "$work/x" "$work/out"

  # --ignore-scripts: packing a registry spec runs none today, and must never run any.
  npm pack "$pkg@$version" --pack-destination "$work/pack" --json --ignore-scripts --silent >"$work/pack.json"

  # npm checks the download against the registry's integrity; we also check the tarball ourselves against the
  # integrity pinned here, so a changed registry answer cannot slip in under the same version.
  local tgz
  tgz=$(node -e '
    const [file, want] = process.argv.slice(1);
    const info = JSON.parse(require("fs").readFileSync(file, "utf8"))[0];
    if (info.integrity !== want) { console.error(`npm reports ${info.integrity}, pinned ${want}`); process.exit(1); }
    process.stdout.write(info.filename);
  ' "$work/pack.json" "$integrity")
  node -e '
    const [file, want] = process.argv.slice(1);
    const got = "sha512-" + require("crypto").createHash("sha512")
      .update(require("fs").readFileSync(file)).digest("base64");
    if (got !== want) { console.error(`${file}: sha512 ${got}, pinned ${want}`); process.exit(1); }
  ' "$work/pack/$tgz" "$integrity"

  # Extract only the files we ship.
  local pair srcs=()
  for pair in "$@"; do srcs+=("${pair%%=*}"); done
  tar -xzf "$work/pack/$tgz" -C "$work/x" "${srcs[@]}"
  for pair in "$@"; do cp "$work/x/${pair%%=*}" "$work/out/${pair#*=}"; done

  node -e '
    const [out, pkg, version, integrity, ...pairs] = process.argv.slice(1);
    const fs = require("fs"), crypto = require("crypto");
    const files = {};
    for (const pair of pairs) {
      const [src, name] = pair.split("=");
      const sha256 = crypto.createHash("sha256").update(fs.readFileSync(`${out}/${name}`)).digest("hex");
      files[name] = { from: src, sha256 };
    }
    const manifest = { package: pkg, version, integrity, registry: "npm", files };
    fs.writeFileSync(`${out}/MANIFEST.json`, JSON.stringify(manifest, null, 2) + "\n");
  ' "$work/out" "$pkg" "$version" "$integrity" "$@"

  if [ "$MODE" = --check ]; then
    diff -r "$work/out" "$VENDOR/$dir" || { echo "$VENDOR/$dir differs from $pkg@$version" >&2; return 1; }
    echo "ok: $dir = $pkg@$version"
  else
    rm -rf "${VENDOR:?}/$dir"  # replace the whole directory: no stale file from an older version stays behind
    mkdir -p "$VENDOR"
    cp -r "$work/out" "$VENDOR/$dir"
    echo "vendored $pkg@$version into dashboard/static/vendor/$dir"
  fi
}

# uPlot: small, fast canvas time series (occupancy and inflow panels in dashboard/static/charts.js).
vendor uplot uplot 1.6.32 \
  "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==" \
  package/dist/uPlot.iife.min.js=uPlot.iife.min.js \
  package/dist/uPlot.min.css=uPlot.min.css \
  package/LICENSE=LICENSE
