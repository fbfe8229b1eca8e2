"""gov's statistics: pure functions of plain data (counts, series, policy conditions).

Nothing here imports git, DVC, the file system or the registry, so every function can be
tested exhaustively, property-tested and benchmarked on numbers alone.
"""
