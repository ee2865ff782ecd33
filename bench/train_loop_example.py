"""A trainer's loop on a tandem mixture: 2 ranks (torch.distributed, gloo) x 2 DataLoader workers,
checkpoints with the loader state, a crash, and a resume that sees exactly the data it should.

    python bench/train_loop_example.py                 # demo data in a temp dir
    python bench/train_loop_example.py --out OUT --mixture NAME
    python bench/train_loop_example.py --verify        # uninterrupted run == crash + resume run
    python bench/train_loop_example.py --verify --elastic 3 1   # also resume the crash on 3 ranks x 1 worker

--verify runs three times: A straight through; B crashes after --crash-at steps (its last
checkpoint is older); C resumes B from that checkpoint. Steps up to the checkpoint from B plus the
steps of C must equal A, example for example, on every rank.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def train(rank: int, world_size: int, args: argparse.Namespace, run_dir: Path, crash_at: int | None,
          resume_from: Path | None = None) -> None:
    """One rank's training loop: what a new user writes."""
    import torch
    import torch.distributed as dist
    from pipelines.train import MixtureDataset, collate
    from pipelines.train.tokens import ByteTokenizer
    from torchdata.stateful_dataloader import StatefulDataLoader

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{run_dir}/pg", rank=rank, world_size=world_size)
    torch.manual_seed(0)

    # rank and world size come from torch.distributed; DataLoader workers are found on their own
    data = MixtureDataset(args.out, args.mixture, seed=1234, tokenizer=ByteTokenizer(),
                          max_duration_s=args.max_duration, crop="random", shuffle_buffer=8)
    # a stand-in model; gradients averaged across ranks by hand (DDP does the same, slower to start on CPU)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    # StatefulDataLoader keeps, per worker, the dataset state of the last batch it handed out
    loader = StatefulDataLoader(data, batch_size=args.batch_size, num_workers=args.workers, collate_fn=collate)
    ckpt = run_dir / f"ckpt-rank{rank}.pt"
    step = 0
    if ckpt.exists():  # resume: model, optimizer AND data position
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        # same ranks and workers: the loader restores each worker. On another number of ranks or
        # workers, pass every old rank's saved loader state instead: data.load_state_dicts([...])
        loader.load_state_dict(state["data"])
        step = state["step"]
    elif resume_from is not None:  # elastic: another number of ranks/workers than the checkpoints
        olds = [torch.load(p, weights_only=False) for p in sorted(resume_from.glob("ckpt-rank*.pt"))]
        model.load_state_dict(olds[0]["model"])
        opt.load_state_dict(olds[0]["opt"])
        data.load_state_dicts([o["data"] for o in olds])  # every old rank's loader state
        step = olds[0]["step"]
    batches = iter(loader)
    with open(run_dir / f"steps-rank{rank}.jsonl", "a") as log:
        while step < args.steps:
            batch = next(batches)
            step += 1
            feats = batch["audio"].pow(2).mean(-1)  # [B, 2] a stand-in for a real model's input
            loss = model(feats).pow(2).mean() + 0.0 * batch["text_tokens"].float().mean()
            opt.zero_grad()
            loss.backward()
            for p in model.parameters():
                dist.all_reduce(p.grad)
                p.grad /= world_size
            opt.step()
            log.write(json.dumps({"step": step, "ids": batch["example_id"],
                                  "comp_epoch": batch["_pos"][:, 2:4].tolist()}) + "\n")
            log.flush()
            if step % args.ckpt_every == 0:
                tmp = ckpt.with_suffix(".tmp")
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                            "data": loader.state_dict(), "step": step}, tmp)
                os.replace(tmp, ckpt)
            if crash_at is not None and step == crash_at:
                os._exit(17)  # simulate a node failure: no cleanup
    del batches  # stops the DataLoader workers now
    dist.destroy_process_group()


def run(args: argparse.Namespace, run_dir: Path, crash_at: int | None = None, resume_from: Path | None = None,
        world_size: int | None = None) -> list[int]:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "pg").unlink(missing_ok=True)
    # heavy imports once, before forking the ranks (torch optimizers import torch._dynamo lazily)
    import pipelines.train.loader  # noqa: F401
    import torch._dynamo  # noqa: F401
    ctx = mp.get_context("fork")
    world_size = world_size or args.world_size
    procs = [ctx.Process(target=train, args=(r, world_size, args, run_dir, crash_at, resume_from))
             for r in range(world_size)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    return [p.exitcode for p in procs]


def steps_seen(run_dir: Path, rank: int) -> dict[int, list[str]]:
    """Step -> example ids; a step logged twice (before a crash, again after resume) keeps the last."""
    out: dict[int, list[str]] = {}
    for line in (run_dir / f"steps-rank{rank}.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out[rec["step"]] = rec["ids"]
    return out


def demo_output(root: Path) -> tuple[str, str]:
    from catalogs.mix import add_mixture

    from tandem.testing.loader import make_output_dir

    out = root / "out"
    make_output_dir(out, 48, languages=("en", "fr", "de"), durations=(1.0, 1.5, 2.0), per_item=4,
                    items_per_commit=3)
    add_mixture(out, "demo", "SELECT example_id FROM examples WHERE language = 'en'", 2.0)
    add_mixture(out, "demo", "SELECT example_id FROM examples WHERE language IN ('fr', 'de')", 1.0)
    return str(out), "demo"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="output dir with a catalog (default: demo data in a temp dir)")
    ap.add_argument("--mixture", default="demo")
    ap.add_argument("--world-size", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--ckpt-every", type=int, default=4)
    ap.add_argument("--crash-at", type=int, default=6)
    ap.add_argument("--max-duration", type=float, default=1.0)
    ap.add_argument("--verify", action="store_true")
    ap.add_argument("--elastic", type=int, nargs=2, metavar=("RANKS", "WORKERS"), default=None,
                    help="with --verify: also resume the crashed run on RANKS x WORKERS and check that no "
                         "example comes twice in a component epoch")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tandem-train-") as tmp:
        root = Path(tmp)
        if args.out is None:
            args.out, args.mixture = demo_output(root)
        if not args.verify:
            codes = run(args, root / "run")
            print(f"ranks exited with {codes}")
            for r in range(args.world_size):
                seen = steps_seen(root / "run", r)
                print(f"rank {r}: {len(seen)} steps, {sum(map(len, seen.values()))} examples")
            return 0 if all(c == 0 for c in codes) else 1
        a = run(args, root / "A")
        b = run(args, root / "B", crash_at=args.crash_at)
        elastic_ok = elastic_check(args, root) if args.elastic else True
        c = run(args, root / "B")  # resume from B's last checkpoint
        if a != [0] * args.world_size or b != [17] * args.world_size or c != [0] * args.world_size:
            print(f"unexpected exit codes A={a} B={b} C={c}")
            return 1
        ok = True
        for r in range(args.world_size):
            full, resumed = steps_seen(root / "A", r), steps_seen(root / "B", r)
            same = full == resumed
            ok &= same
            ids = [i for s in sorted(full) for i in full[s]]
            print(f"rank {r}: {len(full)} steps, {len(ids)} examples, {len(set(ids))} distinct; "
                  f"crash at step {args.crash_at}, resumed from step "
                  f"{args.crash_at - args.crash_at % args.ckpt_every}: {'identical' if same else 'DIFFERENT'}")
        print("resume check:", "OK" if ok else "FAILED")
        return 0 if ok and elastic_ok else 1


def elastic_check(args: argparse.Namespace, root: Path) -> bool:
    """Resume B's checkpoints on another number of ranks and workers (run E); B's steps up to its
    checkpoint plus E's steps must hold no example twice within a component epoch."""
    ranks, workers = args.elastic
    e_args = argparse.Namespace(**{**vars(args), "workers": workers})
    codes = run(e_args, root / "E", resume_from=root / "B", world_size=ranks)
    ckpt_step = args.crash_at - args.crash_at % args.ckpt_every
    seen: dict[tuple, int] = {}
    for run_dir, n, upto in ((root / "B", args.world_size, ckpt_step), (root / "E", ranks, args.steps)):
        for r in range(n):
            last: dict[int, dict] = {}
            for line in (run_dir / f"steps-rank{r}.jsonl").read_text().splitlines():
                rec = json.loads(line)
                last[rec["step"]] = rec
            for step, rec in last.items():
                if step <= upto:
                    for eid, (comp, epoch) in zip(rec["ids"], rec["comp_epoch"]):
                        seen[(comp, epoch, eid)] = seen.get((comp, epoch, eid), 0) + 1
    twice = sum(v > 1 for v in seen.values())
    ok = codes == [0] * ranks and twice == 0
    print(f"elastic resume {args.world_size}x{args.workers} -> {ranks}x{workers} from step {ckpt_step}: "
          f"{len(seen)} (component epoch, example) pairs, {twice} twice: {'OK' if ok else 'FAILED'}")
    return ok


if __name__ == "__main__":
    sys.exit(main())
