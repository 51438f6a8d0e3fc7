"""Scheduling: op order, tensor lifetimes, arena offsets, patches."""
