"""benchmarks: latency and throughput profiling of spectrolite, per stage.

Every command prints figures and writes JSON.
"""
