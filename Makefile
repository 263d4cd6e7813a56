# The exact commands CI runs, for running CI locally.
.PHONY: ci test lint bench-serve
ci:
	bash .ci/run
test:
	./scripts/test
lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
bench-serve:
	bench/serve
