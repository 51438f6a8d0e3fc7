"""Jinja templates for kernels, the model library and firmware."""
