"""The producer half of mtssl: Ray jobs that turn image folders and videos into WebDataset shards.

Nothing here imports torch; the shard contract lives in :mod:`mtssl.contract`.
"""
