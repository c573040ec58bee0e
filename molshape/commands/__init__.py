"""One module per ``molshape`` subcommand; each exposes a click command named ``command``."""
