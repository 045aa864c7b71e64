#!/usr/bin/env bash
# Fetches the studio's vendored scripts from the npm registry (npm pack checks each tarball
# against the registry's published integrity) and puts them beside this file.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
fetch() {  # package@version, folder, files inside the package...
  local spec="$1" folder="$2"; shift 2
  npm pack --silent "$spec" >/dev/null
  mkdir -p "unpacked/$folder" "$here/$folder"
  tar xzf ./*.tgz -C "unpacked/$folder" && rm ./*.tgz
  cp "unpacked/$folder/package/LICENSE" "$here/$folder/"
  for file in "$@"; do cp "unpacked/$folder/package/$file" "$here/$folder/"; done
  echo "vendored $spec"
}
fetch marked@18.3.0 marked lib/marked.esm.js
fetch dompurify@3.5.0 dompurify dist/purify.es.mjs
fetch eventsource-parser@4.1.3 eventsource-parser dist/index.js dist/parse.js dist/errors.js
