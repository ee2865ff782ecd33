"""Data contracts, audio I/O, model adapters, curation stages, the store and the trainer API."""
