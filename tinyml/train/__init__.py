"""Gradients for quantization: the IR lowered to PyTorch (lowering.py), Hessian traces (hessian.py),
quantization-aware fine-tuning (finetune.py) and the mixed-precision driver (mixed.py).

Needs the `train` extra (torch, pulp); core verbs never import this package.
"""
