"""Library-scale screening: generate, deduplicate, score and filter molecules in chunks.

chunks (the seeded chunk plan) -> filters (``qed>=0.6``) -> columns (what each target
scores) -> pipeline (one chunk: latents -> decode -> canonical strings -> scores -> hash
partitions) -> dedup (partition by partition, first occurrence in chunk order) -> engine
(in-process or Dask distributed) -> run (the run folder, resume, top-k, summary).
"""
