# fracture — build, test, demo, bench.
#   make        builds the launcher, the shim and the C fixtures
#   make test   runs every test (what CI runs)
#   make demo   shows /usr/bin/file with libmagic in a helper process
#   make bench  prints the benchmark table and writes bench/results.json

CARGO    ?= cargo
RELEASE  := target/release
FIXTURES := $(CURDIR)/target/fixtures
FRACTURE := $(RELEASE)/fracture

.PHONY: all build fixtures test demo bench lint clean

all: build fixtures

build:
	$(CARGO) build --release --workspace

fixtures:
	$(MAKE) -C tests/c-fixtures OUT=$(FIXTURES)

# The fleet tests need a PostgreSQL server: a private one is started for the run and
# stopped after it, whatever the tests' outcome.
test: all
	@url=$$(tests/pg/server.sh start) && \
	  FRACTURE_TEST_POSTGRES=$$url $(CARGO) test --release --workspace; \
	  rc=$$?; tests/pg/server.sh stop; exit $$rc

demo: all
	@bash demo/demo.sh

bench: all
	@python3 bench/run.py

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --release --workspace --no-deps --lib

clean:
	$(CARGO) clean
	$(MAKE) -C tests/c-fixtures OUT=$(FIXTURES) clean
