"""benchmarks: latency and throughput profiling of spectrolite, per stage; every command prints figures and writes JSON."""
