"""Batch jobs over many videos: discover inputs, classify and embed them resumably, scale out on Ray, index in Milvus.

Modules, one concept each: `operators` (loading the TimeSformer operator and the decoder from this checkout),
`inputs` (what to process), `indexer` (one video -> one result row), `results` (the resumable chunked output),
`ray_engine` (Ray Data scale-out), `milvus_store` (the similarity index), `runner` (the job), `cli`.
Importing this package is cheap on purpose: Ray workers import it before they load any model.
"""
