"""tandem: data pipeline for full-duplex speech-text models.

The repository's top-level folders install as subpackages of this one namespace:
tandem.pipelines, tandem.synth, tandem.filters, tandem.catalogs, tandem.ray_jobs.
"""

__version__ = "0.2.0"
