"""Batch jobs over many videos: discover inputs, classify and embed them resumably, scale out on Ray, index in Milvus.

Modules, one concept each: `operators` (loading the TimeSformer operator and the decoder from this checkout);
the stages: `inputs` (source: what to process), `decoding` (a video -> its clips' uint8 frames), `model_stage`
(batches of clips -> labels, scores, features), `rows` (a video's clip results -> its rows), `results` and
`milvus_store` (sinks: the resumable chunked output, the similarity index); the engines that run them:
`local_engine` (decode worker processes, the model here) and `ray_engine` (Ray Data: CPU decode tasks, a model
actor pool); `indexer` (the stages in this process, for one video); `runner` (the job), `cli`.
Importing this package is cheap on purpose: Ray workers import it before they load any model.
"""
