# seckill: `make run` serves with embedded defaults; `make test` runs the whole suite.
GO      ?= go
DATA    ?= ./data
HTTP    ?= 127.0.0.1:8080
FUZZTIME ?= 10s
CLUSTER_DIR ?= ./cluster-data

.PHONY: run test deps build bench fuzz vet cluster

run:
	$(GO) run ./cmd/seckill serve --data $(DATA) --http $(HTTP)

build:
	$(GO) build -o seckill ./cmd/seckill

# cluster runs etcd (TLS, client certificates), Redis (an ACL user, protected
# mode on), three clustered NATS servers and three nodes on 127.0.0.11-13
# in the foreground (scripts/cluster.sh says how to change the
# addresses); a process that dies is reported and the rest keep running;
# Ctrl-C stops them all and removes CLUSTER_DIR unless KEEP=1.
cluster:
	@exec env CLUSTER_DIR='$(CLUSTER_DIR)' GO='$(GO)' bash scripts/cluster.sh

# deps installs what the tests need and the machine lacks.
deps:
	@command -v $(GO) >/dev/null || { echo "Go 1.26 is required: https://go.dev/dl/"; exit 1; }
	$(GO) mod download
	command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)
	command -v etcd >/dev/null || (apt-get update -qq && apt-get install -y -qq etcd-server)
	command -v etcdctl >/dev/null || (apt-get update -qq && apt-get install -y -qq etcd-client)
	command -v nft >/dev/null || (apt-get update -qq && apt-get install -y -qq nftables)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

test: deps vet
	$(GO) test -race -count=1 -timeout 25m ./...
	# two protoactor remotes in one process: the race detector flags races inside grpc and
	# protoactor themselves (see remote/transport_test.go), so these run without it
	$(GO) test -count=1 ./remote
	# the deterministic simulation, thousands of seeds (pure code: no -race needed)
	$(GO) test -count=1 -run '^TestSimulation$$' ./engine -sim.seeds=3000
	# the cluster's journal, failovers and faults, simulated: ten thousand seeds
	$(GO) test -count=1 -run '^TestClusterSimulation$$' ./engine -csim.seeds=10000

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...

# fuzz runs every fuzz target for FUZZTIME each.
fuzz:
	@for pkg in ./engine ./persistence ./transport ./bus ./remote ./bench ./auth ./limit; do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# bench runs the Go benchmarks and the HTTP harness (one at a time: 2 cores).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./engine ./actors ./persistence ./transport
	$(GO) run ./cmd/seckill bench --workload soldout --compare --duration 10s
	$(GO) run ./cmd/seckill bench --workload durable --compare --duration 10s
