"""Data sets: the registry of sources, verified downloads, record readers, parsed and
split data sets (cached), and length-bucketed batches."""
