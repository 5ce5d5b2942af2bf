"""Shopmesh benchmarks: `python -m bench` (= make bench) runs each one; results go to
bench/results/<name>.json. Each module also runs alone: `python -m bench.grpc_direct`."""
