"""The data sets molshape knows: names, parts, alternative sources and their checksums.

A data set is a named :class:`DataSpec` in :data:`DATASETS`. It has one or more parts
(MNIST has four IDX files; ZINC250k has one), and each part has alternative
:class:`Source` s: mirrors or formats, each with its own file name and checksum.
:mod:`molshape.data.download` finds, fetches and verifies them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """One way to obtain a file.

    Attributes:
        file: file name in the download cache and in ``$MOLSHAPE_DATA_DIR``.
        url: where to fetch it; None for copies that are only ever local.
        sha256: published sha256 of the file, if known.
        md5: published md5 (torchvision's checksums), used when no sha256 is known.
        rows: accepted number(s) of records; the content check for trust on first use.
    """

    file: str
    url: str | None = None
    sha256: str | None = None
    md5: str | None = None
    rows: int | tuple[int, ...] | None = None


@dataclass(frozen=True)
class DataSpec:
    """A registered data set.

    Attributes:
        name: registry key (``zinc250k``, ``mnist`` ...).
        description: one line for ``molshape data info``.
        parts: part name -> alternative sources, preferred first.
        folder: for multi-part sets, the folder that holds the parts (``mnist/...``).
        grammar: the grammar whose strings the set holds, if any.
        generated: True when molshape can build the set itself (no download needed).
        note: extra advice shown when the set cannot be downloaded.
    """

    name: str
    description: str
    parts: dict[str, tuple[Source, ...]]
    folder: str | None = None
    grammar: str | None = None
    generated: bool = False
    note: str = ""

    @property
    def single(self) -> bool:
        return len(self.parts) == 1

    def sources(self) -> list[Source]:
        return [s for alternatives in self.parts.values() for s in alternatives]


def _idx_set(name: str, base: str, md5s: dict[str, str], description: str,
             sha256s: dict[str, str] | None = None) -> DataSpec:
    parts = {stem: (Source(f"{stem}.gz", base + f"{stem}.gz", sha256=(sha256s or {}).get(stem), md5=md5),)
             for stem, md5 in md5s.items()}
    return DataSpec(name, description, parts, folder=name)


_GDRIVE = "https://drive.google.com/uc?export=download&id="
#: the shared copy has 249,456 molecules; several projects report 249,455 for their copy of
#: the upstream files, so the first-use content check accepts both
_ZINC_ROWS = (249_456, 249_455)

DATASETS: dict[str, DataSpec] = {
    "zinc250k": DataSpec(
        "zinc250k", "ZINC250k drug-like molecules (GVAE / chemical-VAE), one SMILES a line",
        {"smiles": (
            Source("250k_rndm_zinc_drugs_clean.smi",
                   "https://raw.githubusercontent.com/mkusner/grammarVAE/master/data/250k_rndm_zinc_drugs_clean.smi",
                   rows=_ZINC_ROWS),
            Source("250k_rndm_zinc_drugs_clean_3.csv",
                   "https://raw.githubusercontent.com/aspuru-guzik-group/chemical_vae/master/models/"
                   "zinc_properties/250k_rndm_zinc_drugs_clean_3.csv",
                   rows=_ZINC_ROWS),
            Source("zinc250k.smi.gz",
                   sha256="50b6b95dbdd4547344602c352b6e770daf8bda801fcd670fc487334d04a1ab36"),
        )},
        grammar="smiles"),
    "expr": DataSpec(
        "expr", "GVAE arithmetic expressions (<= 15 productions), tokens space-separated",
        {"expressions": (
            Source("equation2_15_dataset.txt.gz",
                   sha256="c98f492fa1e5c15f63cb32b62372d5ed35ae469d634262ae4b0b0fe5cdf690b3", rows=100_000),
            Source("equation2_15_dataset.txt", rows=100_000),
        )},
        grammar="expr", generated=True,
        note="GVAE publishes this set only as one-hot HDF5 (data/eq2_grammar_dataset.h5, needs h5py); "
             "molshape generates 100,000 expressions instead, or pass --data to a text copy"),
    "mnist": _idx_set(
        "mnist", "https://ossci-datasets.s3.amazonaws.com/mnist/",
        {"train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
         "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
         "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
         "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c"},
        "MNIST handwritten digits, IDX (torchvision md5s)",
        sha256s={"t10k-images-idx3-ubyte": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                 "t10k-labels-idx1-ubyte": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"}),
    "fashion-mnist": _idx_set(
        "fashion-mnist", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {"train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
         "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
         "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
         "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310"},
        "Fashion-MNIST, IDX (torchvision md5s)"),
    "svhn": DataSpec(
        "svhn", "SVHN cropped digits 32x32, MATLAB .mat (torchvision md5s)",
        {"train": (Source("train_32x32.mat", "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
                          md5="e26dedcc434d2e4c54c9b2d4a06d8373"),),
         "test": (Source("test_32x32.mat", "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
                         md5="eb5a983be6a315427106f1b164d9cef3"),)},
        folder="svhn"),
    "celeba": DataSpec(
        "celeba", "CelebA aligned faces (JPEG zip) and partition list (torchvision md5s)",
        {"images": (Source("img_align_celeba.zip", _GDRIVE + "0B7EVK8r0v71pZjFTYXZWM3FlRnM",
                           md5="00d2c5bc6d35e252742224ab0c1e8fcb"),),
         "partition": (Source("list_eval_partition.txt", _GDRIVE + "0B7EVK8r0v71pY0NSMzRuSXJEVkk",
                              md5="d32c9cbf5e040fd4025c592c306e6668"),),
         "attributes": (Source("list_attr_celeba.txt", _GDRIVE + "0B7EVK8r0v71pblRyaVFSWGxPY0U",
                               md5="75e246fa4810816ffd6ee81facbd244c"),)},
        folder="celeba",
        note="Google Drive often answers large files with a confirmation page instead of the file; "
             "if so, download img_align_celeba.zip in a browser and pass --data to its folder"),
}


def get_spec(name: str) -> DataSpec:
    """The registry entry ``name``; a clear ``KeyError`` listing the known names otherwise."""
    if name not in DATASETS:
        raise KeyError(f"unknown data set {name!r}; known data sets: {', '.join(DATASETS)}")
    return DATASETS[name]
