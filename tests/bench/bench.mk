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
