import argparse
import json
from collections import defaultdict

import duckdb
import pytest
from catalogs import mix
from pipelines.train import LoaderError, MixtureDataset, ShardDataset, collate
from torchdata.stateful_dataloader import StatefulDataLoader

from tandem.testing import loader as lt

EN = "SELECT example_id FROM examples WHERE language = 'en'"
FR = "SELECT example_id FROM examples WHERE language = 'fr'"


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    out = tmp_path_factory.mktemp("mix") / "out"
    rows = lt.make_output_dir(out, 32, languages=("en", "fr"), durations=(0.5, 0.7), per_item=4,
                              items_per_commit=2)
    return out, rows


def test_add_mixture_writes_json_and_catalog_loads_it(out, tmp_path):
    out, _ = out
    m = mix.add_mixture(out, "enfr", EN, 3)
    mix.add_mixture(out, "enfr", FR, 1.0, component="french")
    m = mix.add_mixture(out, "enfr", EN, 2.5)  # same SQL: re-weighted, not duplicated
    assert [(c["name"], c["weight"]) for c in m["components"]] == [("french", 1.0), ("c0", 2.5)]
    saved = json.loads((out / "mixtures" / "enfr.json").read_text())
    assert saved["components"] == m["components"] and m["components"][1]["selected_at_add"] == 16
    from catalogs.catalog import build
    build(out)
    con = duckdb.connect(str(out / "catalog.duckdb"), read_only=True)
    got = con.execute("SELECT name, component, weight FROM mixtures ORDER BY component").fetchall()
    con.close()
    assert got == [("enfr", "c0", 2.5), ("enfr", "french", 1.0)]


@pytest.mark.parametrize("kw,msg", [
    ({"name": "bad name!", "sql": EN}, "mixture name"),
    ({"name": "x", "sql": EN, "weight": 0}, "positive"),
    ({"name": "x", "sql": " "}, "empty sql"),
    ({"name": "x", "sql": "SELECT language FROM examples"}, "example_id"),
    ({"name": "x", "sql": "SELECT nope FROM examples"}, "failed"),
])
def test_add_mixture_rejects_bad_input(out, kw, msg):
    with pytest.raises(mix.MixtureError, match=msg):
        mix.add_mixture(out[0], **kw)


def test_cli_run(out, capsys):
    p = argparse.ArgumentParser()
    mix.add_arguments(p)
    assert mix.run(p.parse_args([str(out[0]), "--name", "cli", "--sql", FR, "--weight", "2"])) == 0
    assert "cli/c0: weight 2 (100.0%), 16 examples" in capsys.readouterr().out
    assert mix.run(p.parse_args([str(out[0]), "--name", "cli", "--sql", "SELECT 1", "--weight", "2"])) == 2
    assert "error:" in capsys.readouterr().err


def test_weights_respected_and_components_cycle(out):
    out, rows = out
    lang = {r["example_id"]: r["language"] for r in rows}
    mix.add_mixture(out, "w31", EN, 3.0)
    mix.add_mixture(out, "w31", FR, 1.0)
    ds = MixtureDataset(out, "w31", seed=4, shuffle_buffer=4)
    it = iter(ds)
    n = 1200
    got = [next(it) for _ in range(n)]
    share = sum(lang[ex["example_id"]] == "en" for ex in got) / n
    assert abs(share - 0.75) < 0.045  # 3.6 standard deviations
    assert all(ex["component"] == ("c0" if lang[ex["example_id"]] == "en" else "c1") for ex in got)
    # within one component epoch every example of the component comes exactly once
    per_epoch = defaultdict(list)
    for ex in got:
        p = ex["_pos"].tolist()
        per_epoch[(p[2], p[3])].append(ex["example_id"])
    full = [v for (c, e), v in per_epoch.items() if (c, e + 1) in per_epoch]
    assert full and all(len(v) == 16 and len(set(v)) == 16 for v in full)
    again = iter(MixtureDataset(out, "w31", seed=4, shuffle_buffer=4))
    assert [next(again)["example_id"] for _ in range(50)] == [ex["example_id"] for ex in got[:50]]


def run(ds, n_batches, num_workers=2, batch_size=3, state=None):
    dl = StatefulDataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    if state is not None:
        dl.load_state_dict(state)
    out = []
    for b in dl:
        out.append(b)
        if len(out) == n_batches:
            break
    return out, dl.state_dict()


def slots(bs):
    d = defaultdict(list)
    for b in bs:
        for eid, p in zip(b["example_id"], b["_pos"].tolist()):
            d[p[0]].append((eid, p[2], p[3], p[5]))
    return d


def test_mixture_ranks_workers_and_resume(out):
    out, _rows = out
    mix.add_mixture(out, "rr", EN, 1.0)
    mix.add_mixture(out, "rr", FR, 1.0)
    seen = {}
    for rank in (0, 1):
        kw = {"rank": rank, "world_size": 2, "seed": 9, "shuffle_buffer": 3, "max_duration_s": 0.4}
        full, _ = run(MixtureDataset(out, "rr", **kw), 10)
        head, state = run(MixtureDataset(out, "rr", **kw), 4)
        rest, _ = run(MixtureDataset(out, "rr", **kw), 6, state=json.loads(json.dumps(state)))
        assert dict(slots(head + rest)) == dict(slots(full))  # each worker's stream, continued exactly
        for b in full:
            for eid, p in zip(b["example_id"], b["_pos"].tolist()):
                seen.setdefault((p[2], p[3]), []).append((eid, p[0]))
    # the slots of both ranks share each component epoch without overlap
    for (comp, epoch), v in seen.items():
        ids = [e for e, _ in v]
        assert len(ids) == len(set(ids)), (comp, epoch)
    assert len({s for v in seen.values() for _, s in v}) == 4  # 2 ranks x 2 workers


def test_mixture_errors(out, tmp_path):
    with pytest.raises(LoaderError, match="no mixture named"):
        MixtureDataset(out[0], "missing")
    bad = out[0] / "mixtures" / "broken.json"
    bad.write_text(json.dumps({"name": "broken", "components": [{"sql": EN, "weight": -1}]}))
    with pytest.raises(LoaderError, match="broken.json"):
        MixtureDataset(out[0], "broken")
    bad.unlink()
    with pytest.raises(LoaderError, match="positive"):
        MixtureDataset(components=[(ShardDataset(out[0]), 0.0)])
