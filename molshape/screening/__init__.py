"""Library-scale screening: generate, deduplicate, score and filter molecules in chunks.

chunks (the seeded chunk plan) -> filters (``qed>=0.6``) -> columns (what each target
scores) -> pipeline (one chunk: latents -> decode -> canonical strings -> scores -> hash
partitions) -> dedup (partition by partition, first occurrence in chunk order) -> engine
(in-process or Dask distributed) -> run (the run folder, resume, top-k, summary).

The same chunks and engines serve ``decode --n`` and ``score --input``: partial (a streamed
output and its progress file, for resume) -> stream (chunk tasks, results in chunk order) ->
decode_stream, score_stream.
"""
