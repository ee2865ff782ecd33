"""tandem: data pipeline for full-duplex speech-text models.

The repository's top-level folders are packages of their own (pipelines, synth, filters, catalogs,
ray_jobs); this one holds the version and the test helpers (tandem.testing).
"""

__version__ = "0.2.0"
