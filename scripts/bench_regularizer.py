"""Benchmark the vectorised GMM-DAE losses against a straightforward per-component reference.

Measures, in the same run and on the same inputs:
- forward+backward of KS + CV (batch 500, d 56, K 10 by default),
- estimate_weights (64 prior batches) against a one-batch-at-a-time loop,
after checking that fast and reference give the same values. The reference is the
textbook formulation: a Python loop over components summing each Phi term, the prior
covariance as a loop of per-component outer products, and the empirical covariance one
dimension (one row of outer products) at a time.

Usage:
    python scripts/bench_regularizer.py [--batch 500 --dim 56 --components 10 --device auto --threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils import benchmark

# The batched internals estimate_weights uses, to check them batch by batch.
from molshape.latent.regularizer import GMMPrior, _cov_batched, _ks_batched, cov_loss, estimate_weights, ks_loss
from molshape.core.runtime import resolve_device


# -- reference implementation (per component, per dimension) ------------------------
def ref_ks(z: torch.Tensor, centers: torch.Tensor, std: float) -> torch.Tensor:
    n = z.shape[0]
    zs = torch.sort(z, dim=0).values
    cdf = torch.zeros_like(zs)
    for mu in centers:  # one Phi term per component
        cdf = cdf + 0.5 * (1 + torch.erf((zs - mu) / (std * 2**0.5)))
    cdf = cdf / len(centers)
    ecdf = torch.arange(1, n + 1, dtype=z.dtype, device=z.device).unsqueeze(1) / n
    return ((cdf - ecdf) ** 2).mean()


def ref_prior_cov(centers: torch.Tensor, std: float) -> torch.Tensor:
    k, d = centers.shape
    dev = centers - centers.mean(0)
    cov = std**2 * torch.eye(d, dtype=centers.dtype, device=centers.device)
    for c in dev:  # law of total variance, one outer product per component
        cov = cov + torch.outer(c, c) / k
    return cov


def ref_cov(z: torch.Tensor, centers: torch.Tensor, std: float) -> torch.Tensor:
    n, d = z.shape
    zc = z - z.mean(0)
    rows = [(zc[:, j : j + 1] * zc).sum(0) / n for j in range(d)]  # row j of the covariance
    emp = torch.stack(rows)
    return ((emp - ref_prior_cov(centers, std)) ** 2).mean()


def ref_estimate_weights(prior: GMMPrior, batch_size: int, n_batches: int, generator: torch.Generator) -> tuple[float, float]:
    ks, cv = [], []
    c, s = prior.centers, prior.std.item()
    with torch.no_grad():
        for _ in range(n_batches):
            z, _ = prior.sample(batch_size, generator)
            ks.append(ref_ks(z, c, s).item())
            cv.append(ref_cov(z, c, s).item())
    return len(ks) / sum(ks), len(cv) / sum(cv)


# -- timing --------------------------------------------------------------------------
def median_time(fn, threads: int, label: str) -> float:
    """Median seconds per call via torch.utils.benchmark (handles CUDA sync itself)."""
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads, label=label)
    return timer.blocked_autorange(min_run_time=1.0).median


def fwd_bwd(loss_fn, z0: torch.Tensor):
    def run() -> None:
        z = z0.detach().requires_grad_()
        loss_fn(z).backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--dim", type=int, default=56)
    parser.add_argument("--components", type=int, default=10)
    parser.add_argument("--n-batches", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for both implementations")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)

    prior = GMMPrior(args.dim, args.components, layout="spread").to(device)
    c, s = prior.centers, prior.std.item()
    g = torch.Generator(device=device).manual_seed(0)
    # Slightly off-prior latents, like a model mid-training.
    z = prior.sample(args.batch, g)[0] * 1.1 + 0.1

    # Same values (float64 to separate algorithm from rounding).
    z64, c64, p64 = z.double(), c.double(), GMMPrior(args.dim, args.components, layout="spread").double().to(device)
    for name, fast, ref in [("ks", ks_loss(z64, p64), ref_ks(z64, c64, s)), ("cv", cov_loss(z64, p64), ref_cov(z64, c64, s))]:
        rel = abs(fast.item() - ref.item()) / abs(ref.item())
        print(f"check {name}: fast {fast.item():.10g}  reference {ref.item():.10g}  rel diff {rel:.1e}")
        assert rel < 1e-10, f"{name} differs from the reference"
    zf = z.detach().requires_grad_()
    (ks_loss(zf, prior) + cov_loss(zf, prior)).backward()
    zr = z.detach().requires_grad_()
    (ref_ks(zr, c, s) + ref_cov(zr, c, s)).backward()
    grad_rel = ((zf.grad - zr.grad).norm() / zr.grad.norm()).item()
    print(f"check grad: rel diff {grad_rel:.1e} (float32)")
    assert grad_rel < 1e-4

    t_fast = median_time(fwd_bwd(lambda t: ks_loss(t, prior) + cov_loss(t, prior), z), args.threads, "fast")
    t_ref = median_time(fwd_bwd(lambda t: ref_ks(t, c, s) + ref_cov(t, c, s), z), args.threads, "ref")

    # estimate_weights: same batches through both loss paths must agree ...
    zb = prior.sample(args.n_batches * args.batch, torch.Generator(device=device).manual_seed(1))[0]
    zb = zb.view(args.n_batches, args.batch, args.dim).double()
    fast_ks, fast_cv = _ks_batched(zb, p64).mean().item(), _cov_batched(zb, p64).mean().item()
    loop_ks = sum(ref_ks(b, c64, s).item() for b in zb) / args.n_batches
    loop_cv = sum(ref_cov(b, c64, s).item() for b in zb) / args.n_batches
    print(f"check estimate: E[ks] {fast_ks:.8g} vs {loop_ks:.8g}, E[cv] {fast_cv:.8g} vs {loop_cv:.8g}")
    assert abs(fast_ks - loop_ks) / loop_ks < 1e-10 and abs(fast_cv - loop_cv) / loop_cv < 1e-10
    # ... and the timings include the sampling in both.
    t0 = time.perf_counter()
    w = estimate_weights(prior, args.batch, args.n_batches)
    t_once = time.perf_counter() - t0
    t_est = median_time(lambda: estimate_weights(prior, args.batch, args.n_batches), args.threads, "est")
    t_est_ref = median_time(
        lambda: ref_estimate_weights(prior, args.batch, args.n_batches, torch.Generator(device=device).manual_seed(0)),
        args.threads,
        "est_ref",
    )

    shape = f"batch {args.batch}, d {args.dim}, K {args.components}"
    print(f"device {device}, threads {args.threads}, torch {torch.__version__}")
    print(f"forward+backward  fast {t_fast * 1e3:8.2f} ms   reference {t_ref * 1e3:8.2f} ms   ({shape})")
    print(
        f"estimate_weights  fast {t_est * 1e3:8.2f} ms   loop      {t_est_ref * 1e3:8.2f} ms   "
        f"({args.n_batches} batches; first call {t_once * 1e3:.0f} ms; lambda_ks {w[0]:.4g}, lambda_cv {w[1]:.4g})"
    )
    print(f"bench_regularizer estimate_weights: {t_est_ref / t_est:.1f}x faster than the one-batch-at-a-time loop")
    print(f"bench_regularizer: {t_ref / t_fast:.1f}x faster forward+backward than the per-component reference ({shape})")


if __name__ == "__main__":
    main()
