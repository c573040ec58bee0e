"""molshape: grammar-based latent molecular design with Gaussian-mixture-shaped autoencoders.

Data flows one way, one module per step::

    grammar -> parser -> datasets -> model -> regularizer / objectives -> train
            -> checkpoint -> decoding -> chem / expr_score -> optimize
"""

__version__ = "0.1.0"
