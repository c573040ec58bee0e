"""Latent metrics: beam search, reconstruction three ways, round-trip Tanimoto, teacher-forced NLL,
and ``molshape encode``; on the shipped models and the committed small data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import molshape
from conftest import EXPR_SMALL, ZINC_SMALL
from molshape.cli import main
from molshape.data.records import read_strings
from molshape.grammar.beam import beam_decode, beam_search
from molshape.grammar.decoding import make_decoder
from molshape.gvae import generation as gen
from molshape.gvae.latent_quality import LatentOptions, derangement, latent_quality, teacher_forced_nll


@pytest.fixture(scope="module")
def expr() -> molshape.Model:
    return molshape.load("expr-gmm-cpu")


@pytest.fixture(scope="module")
def kekule() -> molshape.Model:
    return molshape.load("zinc-kekule-gmm-cpu")


def _held(model: molshape.Model, path: Path, n: int) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """The last ``n`` strings of a small data file that parse: (strings, rules, lengths)."""
    strings = read_strings(path)[-3 * n:]
    parsed = gen.parse_inputs(model.grammar, strings)
    keep = parsed.index[:n]
    rules = parsed.rules[:n]
    return [strings[i] for i in keep], rules, (rules != model.grammar.pad).sum(dim=1)


@pytest.mark.parametrize("name", ["expr", "kekule"])
def test_beam_width_one_is_argmax(name: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(name)
    _, rules, _ = _held(model, EXPR_SMALL if name == "expr" else ZINC_SMALL, 40)
    z = gen.encode_rules(model.net, rules)
    decoder = make_decoder(model.grammar)
    argmax = decoder.decode(model.net, z)
    beam = beam_search(decoder, model.net, z, 1)
    assert torch.equal(beam.rules, argmax.rules)
    assert torch.equal(beam.complete, argmax.complete)
    # and through the API: the same strings
    strings = read_strings(EXPR_SMALL if name == "expr" else ZINC_SMALL)[-12:]
    assert list(model.reconstruct(strings, mode="beam", beam_width=1)) == list(model.reconstruct(strings))


def test_beam_log_likelihood_is_the_sequences_and_never_below_argmax(expr: molshape.Model,
                                                                     kekule: molshape.Model) -> None:
    # expression model (grammar masks only): the beam's scores are the teacher-forced log-likelihoods
    _, rules, _ = _held(expr, EXPR_SMALL, 60)
    z = gen.encode_rules(expr.net, rules)
    out = beam_decode(make_decoder(expr.grammar), expr.net, z, 4)
    assert (out.log_likelihood >= out.argmax_log_likelihood).all()
    ll = -teacher_forced_nll(expr.net, expr.grammar, z, out.rules, out.lengths)
    assert torch.allclose(ll, out.log_likelihood, atol=1e-3)
    argmax = make_decoder(expr.grammar).decode(expr.net, z)
    ll_argmax = -teacher_forced_nll(expr.net, expr.grammar, z, argmax.rules, argmax.lengths)
    assert torch.allclose(ll_argmax, out.argmax_log_likelihood, atol=1e-3)
    # Kekulé model under the semantic masks: never below argmax, and strictly better somewhere
    _, rules, _ = _held(kekule, ZINC_SMALL, 24)
    z = gen.encode_rules(kekule.net, rules)
    out = beam_decode(make_decoder(kekule.grammar), kekule.net, z, 3)
    assert out.complete.all()
    assert (out.log_likelihood >= out.argmax_log_likelihood).all()
    assert (out.log_likelihood > out.argmax_log_likelihood + 1e-6).any()


def test_reconstruction_metrics_match_a_direct_computation(expr: molshape.Model, kekule: molshape.Model) -> None:
    from rdkit import Chem, DataStructs
    from rdkit.Chem import AllChem

    opts = LatentOptions(beam_width=3, gvae_samples=4, nll=False, sigmas=(), pictures=False, seed=5, refine_steps=0)
    # expressions: exact = the same string, round trip = string equality
    strings, rules, lengths = _held(expr, EXPR_SMALL, 80)
    lat = latent_quality(expr.net, expr.grammar, rules, lengths, opts)
    assert lat["n"] == 80 and lat["similarity"] == "string_equality"
    for mode, key in (("argmax", "argmax"), ("beam", "beam"), ("gvae", "gvae_protocol")):
        back = expr.reconstruct(strings, mode=mode, beam_width=3, samples=4, seed=5)
        assert lat["recon"][key] == pytest.approx(np.mean([b == s for b, s in zip(back, strings)]))
    assert 0.5 < lat["recon"]["argmax"] <= 1.0
    assert lat["roundtrip"]["mean"] == pytest.approx(lat["recon"]["argmax"])
    # molecules: exact = the same canonical SMILES, round trip = Morgan Tanimoto (r 2, 2048 bits)
    strings, rules, lengths = _held(kekule, ZINC_SMALL, 30)
    lat = latent_quality(kekule.net, kekule.grammar, rules, lengths, LatentOptions(
        beam_width=0, gvae_samples=0, nll=False, sigmas=(), pictures=False, refine_steps=0))
    back = kekule.reconstruct(strings)

    def fp(s):
        return AllChem.GetMorganFingerprintAsBitVect(Chem.MolFromSmiles(s), 2, nBits=2048)

    sims = np.array([DataStructs.TanimotoSimilarity(fp(s), fp(b)) if b else 0.0 for s, b in zip(strings, back)])
    canon = [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in strings]
    assert lat["similarity"] == "tanimoto_morgan2_2048"
    assert lat["recon"]["argmax"] == pytest.approx(np.mean([b == c for b, c in zip(back, canon)]))
    assert lat["roundtrip"]["mean"] == pytest.approx(sims.mean())
    assert lat["roundtrip"]["share_ge_0.6"] == pytest.approx((sims >= 0.6).mean())
    assert lat["roundtrip"]["share_ge_0.8"] == pytest.approx((sims >= 0.8).mean())
    assert lat["recon"]["beam"] is None and lat["nll"]["own"] is None  # skipped parts keep their keys
    assert lat["recon"]["refined"] is None and all(v is None for v in lat["refined"].values())


def test_latent_carries_nats_and_nll_is_the_training_loss(expr: molshape.Model) -> None:
    _, rules, lengths = _held(expr, EXPR_SMALL, 200)
    z = gen.encode_rules(expr.net, rules)
    own = teacher_forced_nll(expr.net, expr.grammar, z, rules, lengths)
    # the step API gives the model's own reconstruction loss (its 'rec' term, eval mode)
    with torch.no_grad():
        rec = expr.net(rules, lengths)["rec"]
    assert own.mean().item() == pytest.approx(rec.item(), rel=1e-3, abs=1e-3)
    perm = derangement(len(z), torch.Generator().manual_seed(0))
    assert not (perm == torch.arange(len(z))).any()
    shuffled = teacher_forced_nll(expr.net, expr.grammar, z[perm], rules, lengths)
    zero = teacher_forced_nll(expr.net, expr.grammar, torch.zeros_like(z), rules, lengths)
    assert shuffled.mean() > own.mean() + 5 and zero.mean() > own.mean() + 5
    lat = latent_quality(expr.net, expr.grammar, rules, lengths,
                         LatentOptions(beam_width=0, gvae_samples=0, sigmas=(0.1, 1.0), pictures=False, refine_steps=0))
    assert lat["nll"]["own"] == pytest.approx(own.mean().item())
    assert lat["nll"]["nats_carried"] == pytest.approx(lat["nll"]["shuffled"] - lat["nll"]["own"])
    nb = lat["neighbourhood"]
    assert list(nb) == ["sigma_0", "sigma_0.1", "sigma_1"]
    assert nb["sigma_0"] >= nb["sigma_0.1"] > nb["sigma_1"]  # farther from the latent, less like the input


def _encode(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["encode", *args, "--threads", "1", "--json"], catch_exceptions=False)
    return result.exit_code, (json.loads(result.stdout) if result.stdout.strip().startswith("{") else result.output)


def test_encode_cli_matches_the_api_and_counts_bad_rows(expr: molshape.Model, tmp_path: Path) -> None:
    good = read_strings(EXPR_SMALL)[:30]
    lines = [f"{s}\tid{i}" for i, s in enumerate(good)]
    lines[3:3] = ["x+(", "\tno-string"]  # two bad rows, lines 4 and 5
    src = tmp_path / "in.txt"
    src.write_text("\n".join(lines) + "\n")
    api = expr.encode_many(good)
    code, npy = _encode(str(src), "-o", str(tmp_path / "z.npy"), "--checkpoint", "expr-gmm-cpu")
    assert code == 3  # some rows skipped
    assert npy["rows"] == 32 and npy["encoded"] == 30 and npy["skipped"] == 2
    assert [r["line"] for r in npy["skipped_rows"]] == [4, 5]
    assert np.array_equal(np.load(tmp_path / "z.npy"), api.z.numpy())
    code, csv_summary = _encode(str(src), "-o", str(tmp_path / "z.csv"), "--checkpoint", "expr-gmm-cpu")
    frame = pd.read_csv(tmp_path / "z.csv")
    assert list(frame.columns[:3]) == ["line", "name", "input"] and csv_summary["names"]
    assert frame["name"].tolist() == [f"id{i}" for i in range(30)]
    assert frame["line"].tolist()[3] == 6  # the lines of the input, after the two skipped
    assert np.array_equal(frame[[f"z{i}" for i in range(expr.latent_dim)]].to_numpy(np.float32), api.z.numpy())
    code, pq = _encode(str(src), "-o", str(tmp_path / "z.parquet"), "--checkpoint", "expr-gmm-cpu")
    assert np.array_equal(pd.read_parquet(tmp_path / "z.parquet")["z0"].to_numpy(), api.z[:, 0].numpy())
    # users' files: no overwrite without --force, never the input itself
    before = (tmp_path / "z.npy").read_bytes()
    code, message = _encode(str(src), "-o", str(tmp_path / "z.npy"), "--checkpoint", "expr-gmm-cpu")
    assert code == 2 and "--force" in message and (tmp_path / "z.npy").read_bytes() == before
    code, _ = _encode(str(src), "-o", str(tmp_path / "z.npy"), "--checkpoint", "expr-gmm-cpu", "--force")
    assert code == 3
    code, message = _encode(str(src), "-o", str(src), "--checkpoint", "expr-gmm-cpu", "--force")
    assert code == 2 and "also an input" in message
    code, message = _encode(str(src), "-o", str(tmp_path / "z.txt"), "--checkpoint", "expr-gmm-cpu")
    assert code == 2 and ".npy" in message


def test_encode_cli_reads_a_csv_of_molecules(kekule: molshape.Model, tmp_path: Path) -> None:
    smiles = read_strings(ZINC_SMALL)[:5]
    src = tmp_path / "mols.csv"
    src.write_text("name,smiles\n" + "".join(f"m{i},{s}\n" for i, s in enumerate(smiles)) + "bad,C1CC\n")
    code, s = _encode(str(src), "-o", str(tmp_path / "z.npy"))
    assert code == 3 and s["encoded"] == 5 and s["skipped_rows"][0]["line"] == 7
    assert np.array_equal(np.load(tmp_path / "z.npy"), kekule.encode(smiles).numpy())


@pytest.mark.full_data
def test_evaluate_writes_the_latent_section(tmp_path: Path, data_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("MOLSHAPE_DATA_DIR", str(data_dir))  # the expression model's own data set
    args = ["evaluate", "--checkpoint", "expr-gmm-cpu", "--n", "50", "--limit", "40", "--threads", "1", "--json",
            "--beam-width", "2", "--gvae-samples", "2", "--refine-steps", "20", "--refine-limit", "10"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lat = json.loads(result.stdout)["latent"]
    assert lat["n"] == 40 and lat["beam"]["width"] == 2 and lat["gvae_protocol"]["samples"] == 2
    assert set(lat) >= {"recon", "roundtrip", "nll", "neighbourhood"}
    assert "latent metrics on 40 test strings" in result.stderr
    assert lat["refined"]["n"] == 10 and lat["refined"]["steps"] == 20 and lat["recon"]["refined"] is not None
    api = molshape.load("expr-gmm-cpu").latent_metrics(limit=40, beam_width=2, gvae_samples=2, refine_steps=20,
                                                       refine_limit=10)
    assert api["recon"] == lat["recon"] and api["nll"] == pytest.approx(lat["nll"])
    assert api["refined"].pop("neighbourhood") == pytest.approx(lat["refined"].pop("neighbourhood"))
    assert api["refined"] == pytest.approx(lat["refined"])
    result = CliRunner().invoke(main, [*args, "--no-latent-metrics", "--out", str(tmp_path / "b")],
                                catch_exceptions=False)
    assert json.loads(result.stdout)["latent"] is None
