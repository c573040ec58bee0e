"""molshape: grammar-based latent molecular design with Gaussian-mixture-shaped autoencoders.

The package tree is the data flow (see docs/ARCHITECTURE.md)::

    core -> grammar -> data -> latent -> training -> gvae -> scoring -> bo -> cli

Python API (:mod:`molshape.api`)::

    import molshape
    m = molshape.load("zinc")                 # shipped name or checkpoint path
    z = m.encode(["CCO", "c1ccccc1"])         # [2 x d]
    m.decode(z)                               # list of SMILES (None where invalid; .reasons)
    m.sample(1000)                            # decoded prior samples; m.sample(100, component=3)
    m.evaluate(n=1000)                        # summary dict (validity, reconstruction, FCD, MOSES, KS, ...)
    molshape.score(["CCO"], target="logp")    # Table (a pandas DataFrame printing complete SMILES)
    molshape.optimize(m, target="logp", seeds=1, iterations=3, batch=20)  # .top(k), .to_frame()
    molshape.screen(m, "runs/lib", n=100_000, keep=["qed>=0.6"], workers=2)  # .top(), .library()
    molshape.decode(m, 100_000, "lib.smi", workers=2)                       # decode --n, chunked, on Dask
    molshape.score_to_csv(smiles, "scores.csv", scheduler="tcp://head:8786")  # score --input, chunked

Nothing writes a file unless given a folder (``out_dir=``); long calls take ``progress=True``.
"""

__version__ = "0.1.0"

#: names served lazily from :mod:`molshape.api`
API = ("load", "score", "optimize", "evaluate", "screen", "decode", "score_to_csv", "Model", "OptimizeResult",
       "ScreenResult", "resolve_model",
       "open_model", "MolshapeError", "InputError", "LatentError")
__all__ = ["__version__", *API]


def __getattr__(name: str):
    if name in API:
        # torch, RDKit and BoTorch load on first use, so `import molshape.cli` (and --help) stays fast
        from molshape import api

        return getattr(api, name)
    raise AttributeError(f"module 'molshape' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
