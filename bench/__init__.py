"""Seeded workloads and benchmarks of the engine (and later the store and the whole venue).

Imports the product; the product never imports it.
"""
