"""Model zoo built by the tests and benchmarks (needs TensorFlow)."""
