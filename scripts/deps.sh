#!/usr/bin/env bash
# Installs the third-party programs the tests and benchmarks run, pinned,
# into .deps/ (never system-wide): Python packages from
# scripts/deps/requirements.txt into .deps/python (use with
# PYTHONPATH=.deps/python, e.g. `python3 -m uvicorn`), npm packages from
# scripts/deps/package-lock.json into .deps/node/node_modules (NODE_PATH).
# Writes .deps/stamp last, when everything is in place; the tests' build
# scripts look for it (cfg herd_test_deps) and skip, saying so, without it.
# Re-running it with nothing changed does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD/.deps
want=$(cat scripts/deps/requirements.txt scripts/deps/package.json scripts/deps/package-lock.json | sha256sum | cut -d' ' -f1)
if [ -f "$root/stamp" ] && [ "$(cat "$root/stamp")" = "$want" ]; then
  exit 0
fi
echo "deps.sh: installing the tests' pinned Python and npm packages into .deps/" >&2
rm -rf "$root"
mkdir -p "$root/node"
PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --no-deps --disable-pip-version-check --no-warn-script-location \
  --target "$root/python" -r scripts/deps/requirements.txt
cp scripts/deps/package.json scripts/deps/package-lock.json "$root/node/"
(cd "$root/node" && npm ci --silent --no-audit --no-fund --ignore-scripts --loglevel=error)
echo "$want" >"$root/stamp"
