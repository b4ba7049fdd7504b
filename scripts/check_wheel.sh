#!/usr/bin/env bash
# Build the sdist and the wheel (from the sdist), check their metadata, and install the wheel without extras into a
# fresh venv outside the repository, from constraints.txt (so pip's cache and the registries suffice): the installed
# files alone must hold the default model and the model configs, `import serena_kit` and `serena txt2img` must work,
# and a face whose extra is absent must name it. Run it in the project's venv (it uses build and twine).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
start=$SECONDS
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --no-isolation: build with the venv's setuptools (pinned in constraints.txt) instead of downloading one.
python -m build --no-isolation --outdir "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
twine check --strict "$work"/dist/*
wheel=$(echo "$work"/dist/serena-*.whl)
for file in "$work"/dist/*; do
  echo "check_wheel: $(basename "$file") $(du -k "$file" | cut -f1) KiB"
done

# Every committed data file of the package (weights, the preview map, configs) is in the wheel.
git ls-files modules/default_model/weights modules/default_model/latent_preview.json modules/model_configs modules/scenes_model | python -c '
import sys, zipfile
inside = set(zipfile.ZipFile(sys.argv[1]).namelist())
missing = [path for path in sys.stdin.read().split() if path not in inside]
sys.exit(f"check_wheel: missing from the wheel: {missing}" if missing else 0)' "$wheel"

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q -c "$repo/constraints.txt" "$wheel"
cd "$work"  # outside the repository: only the installed package can be imported
"$work/venv/bin/python" - <<'EOF'
import importlib.util

import serena_kit

assert "site-packages" in serena_kit.__file__, serena_kit.__file__
optional = ("ipywidgets", "matplotlib", "fastapi", "uvicorn", "ray", "mkdocs")
extras = [name for name in optional if importlib.util.find_spec(name)]
assert not extras, f"the plain install pulled in optional faces: {extras}"
EOF
png=$("$work/venv/bin/serena" txt2img --prompt "a red circle on a blue background" --seed 1 --steps 4 --quiet)
"$work/venv/bin/serena" png-info "$png" | grep -q "Model: serena-default"
if "$work/venv/bin/serena" serve --port 0 2>"$work/serve.err"; then
  echo "check_wheel: serena serve ran without the api extra" >&2
  exit 1
fi
grep -q "optional extra 'api'" "$work/serve.err" || { cat "$work/serve.err" >&2; exit 1; }
echo "check_wheel: ok in $((SECONDS - start)) s"
