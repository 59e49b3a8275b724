"""`aegis-lab bench …`: side-by-side measurements written to docs/benchmarks.md."""
