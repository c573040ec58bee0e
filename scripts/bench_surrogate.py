"""GP fit time and held-out quality for latent BO sizes: exact GP on a 2,000-point subset
vs GVAE's sparse variational GP (500 inducing points), at n x 56 dims.

Synthetic data standing in for encoded ZINC: z ~ N(0, I_56) normalised to the unit cube,
y = a smooth function of 8 random directions + noise (test set: 2,000 points).

Times: wall and process CPU seconds (CPU time is what a busy shared machine distorts least).

On CUDA, wall seconds are the figure (the GPU does the work; CPU seconds then measure
the Python driving it).

Usage: python scripts/bench_surrogate.py [--sizes 5000 20000] [--threads 2] [--device auto]
"""

import argparse
import time

import torch

from molshape.bo.surrogate import SurrogateConfig, evaluate_surrogate, fit_surrogate


def make(n: int, d: int, g: torch.Generator, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.sin(z @ W).sum(-1, keepdim=True) + 0.3 * (z[:, :4] ** 2).sum(-1, keepdim=True)
    y = y + 0.3 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    return ((z + 4) / 8).clamp(0, 1), y


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    ap.add_argument("--dim", type=int, default=56)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from molshape.core.runtime import resolve_device

    dev = resolve_device(args.device)
    timer = "wall" if dev.type == "cuda" else "CPU"
    g = torch.Generator().manual_seed(0)
    W = torch.randn(args.dim, 8, generator=g, dtype=torch.float64) / args.dim ** 0.5
    Xt, Yt = make(2000, args.dim, g, W)
    Xt, Yt = Xt.to(dev), Yt.to(dev)
    print(f"device {dev}, threads {torch.get_num_threads()}, test y std {Yt.std():.3f}", flush=True)
    results = {}
    for n in args.sizes:
        X, Y = make(n, args.dim, g, W)
        X, Y = X.to(dev), Y.to(dev)
        for name, cfg in [("exact-2000", SurrogateConfig(kind="exact", exact_max=2000)),
                          ("svgp-500", SurrogateConfig(kind="svgp", inducing=500))]:
            t0, c0 = time.perf_counter(), time.process_time()
            model = fit_surrogate(X, Y, cfg, torch.Generator().manual_seed(0))
            if dev.type == "cuda":
                torch.cuda.synchronize()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            m = evaluate_surrogate(model, Xt, Yt)
            results[(name, n)] = wall if dev.type == "cuda" else cpu
            print(f"{name:>10} n={n:>6} d={args.dim}: fit {wall:7.1f} s wall, {cpu:7.1f} s CPU, test RMSE {m['rmse']:.3f}, "
                  f"test log-lik {m['loglik']:.3f}", flush=True)
    n = max(args.sizes)
    print(f"bench_surrogate: svgp-500 fit {results[('svgp-500', n)]:.1f} {timer} s vs exact-2000 "
          f"{results[('exact-2000', n)]:.1f} {timer} s at {n} x {args.dim} on {dev.type} "
          f"({results[('svgp-500', n)] / results[('exact-2000', n)]:.1f}x)")


if __name__ == "__main__":
    main()
