"""Graph-to-graph passes: legalization, folding, fusion."""
