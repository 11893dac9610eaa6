"""The I2P-MAE method on tensors: ops, geometry, model, losses, training and evaluation loops.

Nothing here opens a file format or imports :mod:`pipeline`.
"""
