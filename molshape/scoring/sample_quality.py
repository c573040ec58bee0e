"""Generated molecules against real ones: why decodes fail, how realistic the valid ones are.

:func:`molecule_report` gathers, for a list of decoded SMILES:

- the failure-category table (:func:`molshape.scoring.chem_stats.failure_table`);
- realism against the standard ZINC250k test split (5,000 molecules, whatever ``--limit``
  the model was trained with): macrocycle and long-chain shares, rings per molecule and
  the Wasserstein-1 distance of logP, SA, QED, molecular weight and ring count;
- the FCD and the MOSES metrics (IntDiv, SNN, Frag, Scaf; :mod:`molshape.scoring.moses`)
  against the same test split;

each beside its *floor*: as many real training molecules measured the same way, which
is what finite samples alone give (the FCD of 347 real molecules against 500 is 6.66).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from molshape.scoring.chem_stats import failure_table, molecule_stats, plot_property_histograms, realism
from molshape.scoring.moses import fingerprints, moses_metrics
from molshape.data.datasets import standard_reference
from molshape.data.reference import shipped_reference
from molshape.gvae.metrics import fcd


def molecule_report(raw: Sequence[str | None], valid: Sequence[str], data: str | Path | None = None,
                    grammar_name: str = "smiles", device: str = "cpu", with_fcd: bool = True,
                    plot: str | Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Failure categories, realism, FCD and MOSES metrics of decoded molecules, each with its real-data floor.

    Args:
        raw: every decoded string (None for an incomplete derivation), in the grammar's form.
        valid: the valid molecules among them (any SMILES form).
        data: the ZINC250k file; None: the statistics shipped with molshape
            (:mod:`molshape.data.reference`, the same test split), else the file found as by
            ``molshape data info``.
        grammar_name: a molecule grammar, used to locate the standard data set.
        device: where ChemNet runs for the FCD.
        with_fcd: compute the FCD and its floor (about a minute per 10,000 molecules on a CPU).
        plot: write the property histograms (samples over test molecules) to this PNG.

    Returns:
        ``{"failures": {...}, "realism": {...}, "moses": {...}, "fcd": float, "fcd_floor": float, ...}``.
    """
    shipped = shipped_reference() if data is None else None
    s_stats = molecule_stats(valid, progress=progress)
    out: dict[str, Any] = {"failures": failure_table(raw)}
    if shipped is not None:
        test = shipped.test_smiles()
        t_stats = shipped.test_properties()
        out["realism"] = {**realism(s_stats, t_stats), **shipped.meta["floor_realism"]}
        out["reference"] = f"standard ZINC250k test split ({shipped.n_test} molecules; statistics shipped with molshape)"
        parts = {"reference_fragments": shipped.counts("fragments"), "reference_scaffolds": shipped.counts("scaffolds")}
    else:
        test, floor_smiles = standard_reference(grammar_name, max(len(valid), 2), data)
        t_stats = molecule_stats(test, progress=progress)
        f_stats = molecule_stats(floor_smiles[: len(test)], progress=progress)
        out["realism"] = realism(s_stats, t_stats, f_stats)
        out["reference"] = f"standard ZINC250k test split ({len(test)} molecules)"
        parts = {}
    out["moses"] = moses_metrics(valid, reference_fps=fingerprints(test), **parts) if valid else {}
    if with_fcd and len(valid) >= 2:
        if shipped is not None:
            out["fcd"] = fcd(list(valid), [], device, reference_stats=shipped.fcd_stats())
            out["fcd_floor"], out["fcd_floor_n"] = shipped.fcd_floor(len(valid))
        else:
            out["fcd"] = fcd(list(valid), test, device, reference_key="zinc250k-standard-test")
            out["fcd_floor"] = fcd(floor_smiles[: len(valid)], test, device, reference_key="zinc250k-standard-test")
            out["fcd_floor_n"] = len(valid)
        out["fcd_n"] = len(valid)
    if plot is not None:
        plot_property_histograms(s_stats, t_stats, plot)
        out["histograms_png"] = str(plot)
    return out
