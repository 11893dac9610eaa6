"""The I2P-MAE method on tensors: ops, geometry, model, losses, training and evaluation loops.

Nothing here opens a file format or imports :mod:`pipeline`.

Glossary, used in every shape comment and docstring of the project:

======  ===============================================  ==========  ==================================
letter  meaning                                          name        tensor
======  ===============================================  ==========  ==================================
B       objects in a batch                               ``xyz``     (B, N, 3) points of the 3D input
O       objects in a store split (rows of a store)       ``centers`` (B, G, 3) group centres of a scale
N       points per object in a step (2048)               ``neighborhoods`` (B, G, K, 3) centred members
P       points stored per object (8192)                  ``tokens``  (B, G, C) token features
R       points of the rendered subset (2048)             ``mask``    (B, G) bool, True = masked
G       groups (tokens) of one scale                     ``proj``    (B, V, 5) projection parameters
K       neighbours per group                             ``feature`` (B, V, C, h, w) teacher maps
S       scales of the hierarchy (3)                      ``saliency`` (B, V, h, w)
Q       coarser points an interpolation reads from
V       views (3);  C channels;  H, W image pixels (224);  h, w patch grid (14)
======  ===============================================  ==========  ==================================
"""
