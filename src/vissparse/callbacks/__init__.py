"""Lightning callbacks that track accuracy delta, latency and speedup (see issue 4)."""
