# The website that ucregd serves with --static-dir: pages, styles and scripts, plus uPlot
# (the statistics plot) copied into static/vendor/ from tests/browser/node_modules, where
# `npm ci` installs the version pinned in tests/browser/package-lock.json. Installed under
# $(pkgdatadir)/static; release tarballs carry the copied library, so building from one
# needs no npm.
STATIC_FILES = \
	static/index.html static/pack.html static/stats.html static/submit.html \
	static/404.html static/favicon.svg \
	static/css/site.css \
	static/js/common.js static/js/catalog.js static/js/pack.js static/js/stats.js \
	static/js/submit.js
nobase_dist_pkgdata_DATA = $(STATIC_FILES)

UPLOT_DIR = $(top_srcdir)/tests/browser/node_modules/uplot
STATIC_VENDOR_FILES = uPlot.iife.min.js uPlot.min.css uPlot-LICENSE.txt

# Copies uPlot only when node_modules has it and the copy differs, so a read-only source
# tree (as in distcheck) that already has the files is left alone.
static-vendor:
	@if test -f $(UPLOT_DIR)/dist/uPlot.iife.min.js; then \
	  $(MKDIR_P) $(srcdir)/static/vendor && \
	  for pair in dist/uPlot.iife.min.js:uPlot.iife.min.js dist/uPlot.min.css:uPlot.min.css \
	              LICENSE:uPlot-LICENSE.txt; do \
	    from=$(UPLOT_DIR)/$${pair%%:*}; to=$(srcdir)/static/vendor/$${pair##*:}; \
	    cmp -s $$from $$to || cp $$from $$to || exit 1; \
	  done; \
	elif test ! -f $(srcdir)/static/vendor/uPlot.iife.min.js; then \
	  echo "static.mk: uPlot is missing, so the statistics page will draw no plot;" \
	       "run 'npm ci' in tests/browser to install it" >&2; \
	fi
all-local: static-vendor

install-data-local: install-static-vendor
install-static-vendor: static-vendor
	@if test -f $(srcdir)/static/vendor/uPlot.iife.min.js; then \
	  $(MKDIR_P) $(DESTDIR)$(pkgdatadir)/static/vendor && \
	  for f in $(STATIC_VENDOR_FILES); do \
	    $(INSTALL_DATA) $(srcdir)/static/vendor/$$f $(DESTDIR)$(pkgdatadir)/static/vendor/$$f || exit 1; \
	  done; \
	fi

uninstall-local: uninstall-static-vendor
uninstall-static-vendor:
	for f in $(STATIC_VENDOR_FILES); do rm -f $(DESTDIR)$(pkgdatadir)/static/vendor/$$f; done

# A release must carry the plot library, so `make dist` fails without it.
dist-hook: dist-static-vendor
dist-static-vendor: static-vendor
	$(MKDIR_P) $(distdir)/static/vendor
	for f in $(STATIC_VENDOR_FILES); do \
	  cp $(srcdir)/static/vendor/$$f $(distdir)/static/vendor/$$f || exit 1; \
	done

.PHONY: static-vendor install-static-vendor uninstall-static-vendor dist-static-vendor

# The daemon's page routes, 404 page and Content-Security-Policy.
TESTS += tests/server/test_static.py
EXTRA_DIST += tests/server/test_static.py

# Browser tests: headless Debian chromium driven by playwright-core against a real ucregd.
TESTS += tests/browser/run.sh
EXTRA_DIST += tests/browser/run.sh tests/browser/registry.mjs tests/browser/serve.mjs \
	tests/browser/website.test.mjs tests/browser/package.json tests/browser/package-lock.json
