"""Tasks and data: examples, benchmark specs, the registry and the synthetic task."""

from mentalese.tasks.example import Example
from mentalese.tasks.registry import BenchmarkSpec, get_benchmark, list_benchmarks, load_benchmark

__all__ = ["Example", "BenchmarkSpec", "get_benchmark", "list_benchmarks", "load_benchmark"]
