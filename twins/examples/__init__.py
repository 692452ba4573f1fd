"""Domain-free examples that exercise the core: tests, benchmarks and the core demo use them."""
