"""What a model costs on a board, without emitting or compiling C (docs/cost_model.md).

    from tinyml.cost import estimate
    c = estimate(graph, "stm32f405", mode="fast")   # or mode="exact": what `tinyml generate` plans
    c.arena_bytes, c.peak_sram_bytes, c.flash_bytes, c.instructions_estimate, c.layers

Arena and weights are computed; stack, code bytes and instructions are estimates fitted
to QEMU measurements of our own kernels (coefficients.json, benchmarks/fit_cost_model.py).
"""
from tinyml.cost.estimate import Cost, LayerCost, estimate

__all__ = ["Cost", "LayerCost", "estimate"]
