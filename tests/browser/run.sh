#!/bin/sh
# Runs the website's browser tests with node's test runner. Exits 77 (skipped) when Debian
# chromium, node or the npm packages are missing; scripts/test installs all three.
here=$(cd "$(dirname "$0")" && pwd)
chromium=${UC_CHROMIUM:-/usr/bin/chromium}

skip() {
	echo "SKIP: $1"
	exit 77
}

[ -x "$chromium" ] || skip "$chromium is missing; install Debian's chromium package"
command -v node >/dev/null 2>&1 || skip "node is missing; install Debian's nodejs package"
[ -d "$here/node_modules/playwright-core" ] || skip "tests/browser/node_modules is missing; run 'npm ci' in tests/browser"
[ -f "$here/../../static/vendor/uPlot.iife.min.js" ] || skip "static/vendor has no uPlot; run make after 'npm ci' in tests/browser"

exec node --test --test-concurrency=1 --test-reporter=spec "$here/website.test.mjs"
