# libFuzzer targets are built by `make fuzz` with clang; see tests/fuzz/README.md.
