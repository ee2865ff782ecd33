"""tandem pipelines: data contracts, audio I/O, curation stages, model backends, shards, loader."""

__version__ = "0.1.0"
