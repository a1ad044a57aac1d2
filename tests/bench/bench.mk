# Benchmarks: built and run only by `make bench`, never by `make check`. Each prints its
# figures beside a reference measured in the same run and exits 0 whatever the timing.
# A part adds `EXTRA_PROGRAMS += tests/bench/bench_x` and `BENCHMARKS += tests/bench/bench_x`.
EXTRA_PROGRAMS = $(BENCHMARKS)
CLEANFILES += $(BENCHMARKS)

bench: $(BENCHMARKS)
	@for b in $(BENCHMARKS); do \
		echo "== $$b"; \
		UC_DATA_DIR="$${UC_DATA_DIR:-$(abs_top_srcdir)/../shared/data}" ./$$b || exit 1; \
	done
.PHONY: bench

# The daemon benchmark is a script: ucregd against nginx (wrk) and against dd (a 4 GiB
# upload). It runs after the C benchmarks are built, so compiling does not skew it.
bench: bench-server
bench-server: cli/uc server/ucregd $(BENCHMARKS)
	@echo "== tests/bench/bench_server.sh"
	@UC_DATA_DIR="$${UC_DATA_DIR:-$(abs_top_srcdir)/../shared/data}" \
		UC_TOP_BUILDDIR="$(abs_top_builddir)" $(SHELL) $(top_srcdir)/tests/bench/bench_server.sh
.PHONY: bench-server
EXTRA_DIST += tests/bench/bench_server.sh

# The mirror benchmark is a script too: a full sync against curl fetching the same shards,
# and the cost of incremental rounds for two catalog sizes.
bench: bench-mirror
bench-mirror: cli/uc server/ucregd tests/server/make_pack $(BENCHMARKS)
	@echo "== tests/bench/bench_mirror.sh"
	@UC_DATA_DIR="$${UC_DATA_DIR:-$(abs_top_srcdir)/../shared/data}" \
		UC_TOP_BUILDDIR="$(abs_top_builddir)" $(SHELL) $(top_srcdir)/tests/bench/bench_mirror.sh
.PHONY: bench-mirror
EXTRA_DIST += tests/bench/bench_mirror.sh
