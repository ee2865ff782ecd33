"""Hostile and unlucky inputs (issue 20) through the real CLI: one line per case with its outcome.

    nice .venv/bin/python bench/hostile.py [--keep DIR]

Each case builds its input in a temp dir and runs `.venv/bin/tandem ...` (or the toy job's CLI,
`python -m tandem.testing.toy`, where the models of a real job would only cost time), then prints
`case N  ok|FAIL  what happened`. The curation cases (1, 2, 3, 11) share one `tandem curate --local`
run over a manifest, which loads the curation models once (about a minute on 2 cores). Case 7
mounts a 2 MB tmpfs (root only; skipped otherwise). Exit status: the number of FAIL lines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

BIN = Path(sys.executable).parent
TANDEM = str(BIN / "tandem")
SR = 16000
RESULTS: list[bool] = []


def say(case: str, ok: bool, what: str) -> None:
    RESULTS.append(ok)
    print(f"case {case:<3} {'ok  ' if ok else 'FAIL'}  {what}", flush=True)


def run(cmd: list[str], env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})})


def one_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return f"{len(lines)} line(s): {lines[-1][:160] if lines else ''}"


def tone(seconds: float = 3.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def toy(out: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "tandem.testing.toy", str(out), "--local", *args], env=env)


def rejections(out: Path) -> dict[str, list[tuple[str, str]]]:
    from catalogs.catalog import query
    _, rows = query(out, "SELECT uri, reason, detail FROM rejections ORDER BY uri")
    got: dict[str, list[tuple[str, str]]] = {}
    for uri, reason, detail in rows:
        got.setdefault(Path(uri).name, []).append((reason, detail.splitlines()[0] if detail else ""))
    return got


# ---- the cases -------------------------------------------------------------------------------------

def curation_cases(d: Path) -> None:
    """1 playlist/concat posing as .wav, 2 NaN/inf samples, 3 one input named many ways, 11 eight channels."""
    src = d / "cur"
    (src / "sub").mkdir(parents=True)
    secret = d / "elsewhere" / "secret.mp3"
    secret.parent.mkdir()
    run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=f=300:d=4", str(secret)])
    (src / "x.wav").write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{secret}\n#EXT-X-ENDLIST\n")
    (src / "c.wav").write_text(f"ffconcat version 1.0\nfile '{secret}'\n")
    x = tone()
    x[SR: SR + 5] = np.nan
    sf.write(src / "nan.wav", x, SR, subtype="FLOAT")
    y = tone()
    y[SR] = np.inf
    sf.write(src / "inf.wav", y, SR, subtype="FLOAT")
    sf.write(src / "eight.wav", tone(channels=8), SR)
    sf.write(src / "a.wav", tone(), SR)
    names = ["x.wav", "c.wav", "nan.wav", "inf.wav", "eight.wav",
             "a.wav", "./a.wav", "sub/../a.wav", str(src / "a.wav")]
    man = src / "m.jsonl"
    man.write_text("".join(json.dumps({"uri": n}) + "\n" for n in names))
    out = d / "cur_out"
    t0 = time.time()
    r = run([TANDEM, "curate", str(man), str(out), "--local", "--no-progress"])
    if not (out / "catalog.duckdb").exists():
        for case in ("1", "2", "3", "11"):
            say(case, False, f"tandem curate failed (rc {r.returncode}): {one_line(r.stderr)}")
        return
    rej = rejections(out)
    for case, name, want in (("1", "x.wav", "unsupported_format"), ("1", "c.wav", "unsupported_format"),
                             ("2", "nan.wav", "invalid_samples"), ("2", "inf.wav", "invalid_samples"),
                             ("11", "eight.wav", "unsupported_channels")):
        got = rej.get(name, [])
        say(case, [g[0] for g in got] == [want], f"{name}: {got[0][0] + ': ' + got[0][1] if got else 'not rejected'}")
    from catalogs.catalog import query
    _, src_rows = query(out, "SELECT uri, status FROM sources WHERE uri LIKE '%a.wav'")
    _, secret_rows = query(out, "SELECT count(*) FROM sources WHERE uri LIKE '%secret%'")
    say("1", secret_rows[0][0] == 0, "the playlists' target was never ingested")
    a = rej.get("a.wav", [])
    say("3", len(src_rows) + len(a) >= 1 and len(a) <= 1 and len(src_rows) <= 1,
        f"a.wav named 4 ways: {len(src_rows)} source row(s), {len(a)} rejection(s) "
        f"({a[0][0] if a else 'accepted'}); rc {r.returncode}, {time.time() - t0:.0f} s")


def case4(d: Path) -> None:
    sf.write(d / "a.wav", tone(), SR)
    man = d / "bad.jsonl"
    man.write_text('{"uri": "a.wav"}\n{"uri": ""}\n{"uri": "a.wav"\n')
    r = run([TANDEM, "curate", str(man), str(d / "out4"), "--local"])
    say("4", r.returncode == 2 and "line 2" in r.stderr and len(r.stderr.strip().splitlines()) == 1,
        f"empty uri on line 2: rc {r.returncode}, {one_line(r.stderr)}")
    man.write_text('{"uri": "a.wav"}\nnot json\n')
    r = run([TANDEM, "curate", str(man), str(d / "out4"), "--local"])
    say("4", r.returncode == 2 and "line 2: not JSON" in r.stderr,
        f"malformed line 2: rc {r.returncode}, {one_line(r.stderr)}")


def case5(d: Path) -> Path:
    out = d / "toy5"
    faults = ";".join(f"toy_work:driver:1:{d / f'kill{k}'}" for k in range(3))
    codes = [toy(out, "--items", "6", "--commit-every", "1", env={"TANDEM_TOY_FAULT": faults}).returncode
             for _ in range(4)]
    from catalogs.catalog import query
    _, rej = query(out, "SELECT reason FROM rejections")
    _, n = query(out, "SELECT count(*) FROM examples WHERE status = 'accepted'")
    say("5", codes == [-9, -9, -9, 0] and not rej and n == [(6,)],
        f"3 driver kills while item 1 was in a model stage, then a run: rc {codes}, "
        f"{n[0][0]} accepted, rejections {[r[0] for r in rej]}")
    return out


def case6(d: Path) -> None:
    for body in (b"", b"{\"pid\": \"x\"", b"[]", b"\x00\xff garbage"):
        out = d / f"toy6-{len(body)}"
        out.mkdir()
        lock = out / "_lock.json"
        lock.write_bytes(body)
        fresh = toy(out, "--items", "2")
        old = time.time() - 7200
        os.utime(lock, (old, old))
        aged = toy(out, "--items", "2")
        say("6", fresh.returncode != 0 and str(lock) in fresh.stderr and aged.returncode == 0,
            f"_lock.json = {body!r}: fresh -> rc {fresh.returncode} ({fresh.stderr.strip().splitlines()[-1][:90]}...), "
            f"2 h old -> rc {aged.returncode}")


def case7(d: Path) -> None:
    out = d / "full"
    out.mkdir()
    if run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(out)]).returncode != 0:
        say("7", True, "skipped: mounting a tmpfs is not permitted here")
        return
    try:
        r = toy(out, "--items", "40", "--duration", "2", "--commit-every", "1")
        recs = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
        status = [x["status"] for x in recs]
        from pipelines.store.commit import verify
        say("7", r.returncode == 3 and status == ["failed"] and "Traceback" not in r.stderr and not verify(out),
            f"2 MB disk: rc {r.returncode}, run record {status}, committed files whole; {one_line(r.stderr)}")
    finally:
        run(["umount", "-l", str(out)])


def case8(d: Path, out: Path) -> None:
    target = d / "written.txt"
    attack = (f"SELECT example_id FROM examples) AS q); COPY (SELECT 'x') TO '{target}'; "
              "SELECT * FROM ((SELECT example_id FROM examples")
    r = run([TANDEM, "catalog", "mix", str(out), "--name", "evil", "--sql", attack, "--no-validate"])
    say("8", r.returncode == 2 and not target.exists(), f"stacked COPY in a mixture: rc {r.returncode}, "
        f"{one_line(r.stderr)}")
    r = run([TANDEM, "catalog", "query", str(out), "SELECT content FROM read_text('/etc/hostname')"])
    say("8", r.returncode == 2 and "disabled" in r.stderr, f"read_text in a query: rc {r.returncode}, {one_line(r.stderr)}")
    (out / "mixtures").mkdir(exist_ok=True)
    (out / "mixtures" / "evil.json").write_text(json.dumps(
        {"name": "evil", "components": [{"name": "c0", "sql": attack, "weight": 1}]}))
    code = ("from pipelines.train import MixtureDataset\nimport sys\n"
            f"try:\n next(iter(MixtureDataset({str(out)!r}, 'evil')))\nexcept ValueError as e:\n print(e); sys.exit(2)")
    r = run([sys.executable, "-c", code])
    say("8", r.returncode == 2 and not target.exists(), f"MixtureDataset over the file: rc {r.returncode}, "
        f"{one_line(r.stdout + r.stderr)}")


def case9(d: Path, out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pipelines.store.commit import committed_files
    bad = d / "toy9"
    shutil.copytree(out, bad)
    shard = committed_files(bad, "shards")[0]
    t = pq.read_table(shard)
    ids = t.column("example_id").to_pylist()
    ids[0] = "../../x"
    pq.write_table(t.set_column(t.schema.get_field_index("example_id"), "example_id", pa.array(ids)), shard)
    dest = d / "e1" / "e2" / "dest"
    r = run([TANDEM, "export", "moshi", str(bad), str(dest)])
    outside = [p for p in d.rglob("x.*")]
    say("9", r.returncode == 2 and "commit manifest" in r.stderr and not outside,
        f"shard with example_id '../../x': rc {r.returncode}, files outside DEST {len(outside)}; {one_line(r.stderr)}")


def case10(d: Path) -> None:
    r = run([TANDEM, "curate", str(d), str(d / "out10"), "--set", 'asr.beam_size=!!python/object/apply:os.system ["id"]'])
    say("10", r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1,
        f"--set with a python tag: rc {r.returncode}, {one_line(r.stderr)}")


def case12(d: Path) -> None:
    import contextlib
    import io

    from pipelines.core.stage import Stage
    from ray_jobs.jobs import report_retries
    from ray_jobs.runner import run_job

    from tandem.testing.toy import make_items, toy_config, toy_stages

    class Buggy(Stage):
        name = "buggy"

        def process(self, item):
            if item["toy_key"] == "toy-1":
                return item["no such key"]
            return item
    cfg = toy_config(local=True)
    out = d / "toy12"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        res = run_job("toy", make_items(3, cfg), [Buggy(), *toy_stages(cfg)], cfg, out)
        rc = report_retries(res)
        res2 = run_job("toy", make_items(3, cfg), toy_stages(cfg), cfg, out)
    say("12", rc == 3 and res["rejections"] == 0 and res2["items"] == 1 and not res2["retry"],
        f"KeyError in a stage: exit {rc}, {res['rejections']} rejections, not committed; the rerun processed "
        f"{res2['items']} item ({[ln.strip() for ln in err.getvalue().splitlines() if 'toy-1' in ln][:1]})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", help="build the inputs in this directory and keep them")
    ap.add_argument("--skip-curate", action="store_true", help="skip the curation run (cases 1, 2, 3, 11)")
    args = ap.parse_args()
    d = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tandem-hostile-"))
    d.mkdir(parents=True, exist_ok=True)
    try:
        case4(d)
        case10(d)
        case12(d)
        out = case5(d)
        case6(d)
        case7(d)
        case8(d, out)
        case9(d, out)
        if not args.skip_curate:
            curation_cases(d)
    finally:
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)
    fails = RESULTS.count(False)
    print(f"{len(RESULTS)} checks, {fails} failed")
    return fails


if __name__ == "__main__":
    sys.exit(main())
