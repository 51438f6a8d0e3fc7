"""tinyml: neural networks to bit-exact C for Cortex-M microcontrollers."""
__version__ = "0.1.0"
