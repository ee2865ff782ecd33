"""The trainer API: streaming datasets over committed shards, batching, tokens, exports."""

from pipelines.train.collate import collate
from pipelines.train.loader import ShardDataset
from pipelines.train.mixture import MixtureDataset, load_mixture
from pipelines.train.progress import flatten_states
from pipelines.train.units import POS_FIELDS, LoaderError, Unit, build_units, shard_paths, shuffle_plan

__all__ = [
    "POS_FIELDS",
    "LoaderError",
    "MixtureDataset",
    "ShardDataset",
    "Unit",
    "build_units",
    "collate",
    "flatten_states",
    "load_mixture",
    "shard_paths",
    "shuffle_plan",
]
