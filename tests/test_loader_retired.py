"""A trainer holding shard paths listed before a re-filter still reads them: the retired files are
found under OUT/_retired/ (commit.locate) until `tandem gc`, then the error says so."""

import pytest
from torch.utils.data import DataLoader

from pipelines.store.commit import committed_files
from pipelines.train import LoaderError, ShardDataset
from ray_jobs.cli import main
from tandem.testing.outputs import dialogue_output


def _ids(ds, workers=0):
    if not workers:
        return sorted(ex["example_id"] for ex in ds)
    dl = DataLoader(ds, batch_size=None, num_workers=workers)
    return sorted(ex["example_id"] for ex in dl)


def test_paths_listed_before_a_refilter_still_read(tmp_path):
    out = tmp_path / "it's an output"
    dialogue_output(out)
    listed = [str(p) for p in committed_files(out, "shards")]
    kw = {"seed": 3, "shuffle": False, "crop": "start"}
    opened = ShardDataset(listed, **kw)  # units built from the footers, nothing read yet
    want = _ids(ShardDataset(listed, **kw))
    assert want
    assert main(["filter", str(out), "--set", "filters.quality.min_snr_db.synthetic=50"]) == 0
    gone = [p for p in listed if not (out / "shards" / p.rsplit("/", 1)[-1]).exists()]
    assert gone, "the re-filter retired the listed shards"
    assert _ids(opened) == want  # a dataset made before the re-filter
    assert _ids(ShardDataset(listed, **kw), workers=2) == want  # and one made after, from the old list
    assert main(["gc", str(out), "--grace", "0s"]) == 0
    with pytest.raises(LoaderError, match="gc"):
        ShardDataset(listed, **kw)
