"""The ``molshape`` command line: a thin click group that loads each subcommand lazily.

Each subcommand lives in ``molshape/commands/<name>.py`` as a click command named
``command``: it parses and validates, writes its config next to its outputs, and calls
one library function. Lazy loading keeps ``molshape --help`` fast (no torch/RDKit import).
"""

from __future__ import annotations

import importlib
import logging

import click

#: subcommand -> (module, one-line help shown by ``molshape --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "parse": ("molshape.commands.parse", "Parse strings into grammar production sequences (JSON Lines)."),
    "data": ("molshape.commands.data", "Download, locate and describe data sets."),
    "train": ("molshape.commands.train", "Train a grammar autoencoder (gmm, vae, rae, ae)."),
    "decode": ("molshape.commands.decode", "Sample latents and decode them to molecules or expressions."),
    "evaluate": ("molshape.commands.evaluate", "Reconstruction and generation metrics of a checkpoint."),
    "score": ("molshape.commands.score", "Score molecules (penalized logP, QED) or expressions."),
    "optimize": ("molshape.commands.optimize", "Bayesian optimisation in the latent space."),
    "images": ("molshape.commands.images", "Image benchmarks (MNIST, Fashion-MNIST, SVHN, CelebA)."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[name][0])
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="molshape")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """molshape: grammar autoencoders with Gaussian-mixture-shaped latent spaces."""
    level = logging.WARNING - 10 * min(verbose + 1, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


if __name__ == "__main__":
    main()
