"""The consumer's data half: finding and checking shard sets (``shardsets``), streaming them (``stream``).

Kept light on purpose: importing ``mtssl.data`` imports neither torch nor webdataset; import the
submodules for those.
"""
