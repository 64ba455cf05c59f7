"""greendc's benchmark harnesses (run as scripts; see bench/README.md). Not installed."""
