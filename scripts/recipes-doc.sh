#!/usr/bin/env bash
# Rewrites the app files' code blocks in docs/recipes.md from
# crates/herd-cli/tests/programs/recipes/, so that the page shows what the
# tests run (tests/recipes.rs checks it). A block is the fenced code after
# a line `NAME:` (e.g. `asgi.py:`), or after `INCLUDE NAME` in a new block.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - <<'PY'
import pathlib, re
page = pathlib.Path("docs/recipes.md")
apps = pathlib.Path("crates/herd-cli/tests/programs/recipes")
text = page.read_text()
def block(m):
    name, fence = m.group(1), m.group(2)
    body = (apps / name).read_text()
    return f"{name}:\n\n{fence}\n{body}```\n"
text = re.sub(r"^([\w.]+):\n\n(```\w*)\n.*?^```\n", block, text, flags=re.S | re.M)
page.write_text(text)
PY
