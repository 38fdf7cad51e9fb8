#!/usr/bin/env bash
# depcheck: skip (run by hand to refresh the vendored file; needs npm and the registry)
# Vendors Apache ECharts' prebuilt bundle (dist/echarts.min.js) from the npm
# registry into internal/report/vendor, byte for byte, for the single-file
# offline report.html. The pin (version and the npm tarball's integrity) is
# in internal/report/vendor/echarts.pin; `make lint` checks the vendored file
# against echarts.min.js.sha256. To update: change VERSION and INTEGRITY in
# echarts.pin (from `npm view echarts@NEW dist.integrity`), run this script,
# review and commit. Needs npm and network access to the registry.
set -euo pipefail
cd "$(dirname "$0")/../internal/report/vendor"
# shellcheck source=/dev/null
. ./echarts.pin
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "echarts@$VERSION" >/dev/null)
tgz="$tmp/echarts-$VERSION.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
if [[ "$got" != "$INTEGRITY" ]]; then
  echo "vendor-echarts: tarball integrity $got differs from the pin $INTEGRITY" >&2
  exit 1
fi
tar -xzf "$tgz" -C "$tmp" package/dist/echarts.min.js package/LICENSE package/NOTICE
cp "$tmp/package/dist/echarts.min.js" echarts.min.js
cp "$tmp/package/LICENSE" LICENSE
cp "$tmp/package/NOTICE" NOTICE
sha256sum echarts.min.js >echarts.min.js.sha256
echo "vendored echarts $VERSION: $(wc -c <echarts.min.js) bytes, $(cut -d' ' -f1 echarts.min.js.sha256)"
