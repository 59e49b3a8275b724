"""aegis-lab: training, evaluation, data sets, benchmarks and the fault suite of aegis-serve."""
