"""Distributed training on the CPU with gloo: two processes equal one, and `dbp-ae train` under torchrun resumes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

N, B = 256, 32  # 256 digits; per-rank batch B, global batch 2B: 4 steps an epoch
CFG = dict(epochs=2, batch_size=2 * B, lambda1=1.0, lambda2=1.0, schedule="constant", estimator="sum")




def _noise_of_mu(mu, logvar):
    "Sampling noise that depends on the sample alone, so that 2 ranks of B and 1 process of 2B draw the same"
    return mu + torch.exp(0.5 * logvar) * torch.sin(1000 * mu.detach())


def _train(rank, world, rendezvous, out):
    "Train the tiny VAE with DBP as rank `rank` of `world` (1: one process, no group); rank 0 saves the weights"
    import dbp_ae.vae
    threads, reparameterize = torch.get_num_threads(), dbp_ae.vae.reparameterize
    torch.set_num_threads(1)
    dbp_ae.vae.reparameterize = _noise_of_mu
    try:
        _train_patched(rank, world, rendezvous, out)
    finally:   # the one-process run happens in the test's own process: leave it as it was
        torch.set_num_threads(threads)
        dbp_ae.vae.reparameterize = reparameterize


def _train_patched(rank, world, rendezvous, out):
    from dbp_ae.data import load_dataset
    from dbp_ae.train import TrainConfig, fit, make_model, _dist_sampler
    ds = load_dataset("mnist-sample", "test")
    ds = type(ds)(ds.images[:N], ds.labels[:N], "tiny")
    cfg = TrainConfig(**CFG)
    comm, kw = None, {}
    if world > 1:
        from dbp_ae.distributed import Comm
        dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)   # a file: no port to race for
        comm = Comm("cpu")
    else:  # one process, batch 2B, dealt the same permutation the ranks share (a DistributedSampler of one replica)
        kw = dict(sampler_fn=lambda e: _dist_sampler(ds, 1, 0, cfg.seed, e))
    torch.manual_seed(0)
    model = make_model("vae", hidden=(32, 32), z_dim=4)
    t0 = time.time()
    history = fit(model, ds, cfg, device="cpu", progress=False, comm=comm, **kw)
    torch.save(dict(model=model.state_dict(), history=history, seconds=time.time() - t0), f"{out}.{rank}")
    if comm is not None:
        dist.destroy_process_group()


def test_two_ranks_equal_one_process(tmp_path):
    t0 = time.time()
    import dbp_ae.vae
    before = (torch.get_num_threads(), dbp_ae.vae.reparameterize)
    assert before[1] is not _noise_of_mu
    _train(0, 1, None, tmp_path / "one")
    assert (torch.get_num_threads(), dbp_ae.vae.reparameterize) == before   # the patch and the thread count were restored
    t1 = time.time()
    mp.spawn(_train, args=(2, tmp_path / "rendezvous", tmp_path / "two"), nprocs=2)
    t2 = time.time()
    one = torch.load(tmp_path / "one.0", weights_only=True)
    two = [torch.load(tmp_path / f"two.{r}", weights_only=True) for r in (0, 1)]
    diff = max((one["model"][k] - two[0]["model"][k]).abs().max().item() for k in one["model"])
    print(f"\n2 ranks x {B} vs 1 process x {2*B}, DBP on, 8 Adam steps: max |weight difference| {diff:.2e}; "
          f"1 process {one['seconds']:.1f} s ({t1-t0:.1f} s with loading), 2 processes {two[0]['seconds']:.1f} s "
          f"({t2-t1:.1f} s with spawning)")
    assert diff < 1e-5, diff
    for k in one["model"]:  # DDP keeps the two ranks identical
        assert torch.equal(two[0]["model"][k], two[1]["model"][k]), k
    torch.manual_seed(0)
    from dbp_ae.train import make_model
    init = make_model("vae", hidden=(32, 32), z_dim=4).state_dict()
    assert max((init[k] - one["model"][k]).abs().max().item() for k in init) > 100 * max(diff, 1e-7)  # training moved them
    for h1, h2 in zip(one["history"], two[0]["history"]):  # the epoch means are over all ranks
        assert h2["dbp"] > 0 and abs(h1["loss"] - h2["loss"]) < 1e-4 * abs(h1["loss"]), (h1, h2)


TRAIN = ["train", "--model", "vae", "--dataset", "mnist-sample", "--model-cfg", '{"hidden": [64, 64], "z_dim": 8}',
         "--n-train", "512", "--epochs", "4", "--batch-size", "64", "--lambda1", "0.1", "--lambda2", "0.1",
         "--schedule", "constant", "--device", "cpu"]


def _torchrun(out, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",   # the agent binds a free port itself: no race
           "-m", "dbp_ae.cli", *TRAIN, "--out", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **kw)


def _kill_tree(p):
    "SIGKILL the torchrun agent `p` and the workers it started (they run in sessions of their own), as a crash would"
    kids = []
    for task in Path(f"/proc/{p.pid}/task").iterdir():
        kids += [int(c) for c in (task / "children").read_text().split()]
    for pid in [p.pid, *kids]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    p.wait()
    for pid in kids:  # wait until each worker is gone (or a zombie: dead, not yet reaped)
        while True:
            try:
                if "zombie" in Path(f"/proc/{pid}/status").read_text():
                    break
            except FileNotFoundError:
                break
            time.sleep(0.05)


def test_torchrun_train_checkpoints_once_and_resumes(tmp_path):
    out = tmp_path / "run"
    p = _torchrun(out)
    deadline, epoch = time.time() + 300, 0
    while time.time() < deadline:  # kill the whole job (agent and both ranks) once an epoch is checkpointed
        try:
            epoch = torch.load(out / "last.pt", weights_only=True)["epoch"]
        except Exception:  # noqa: BLE001 - not written yet
            epoch = 0
        if epoch >= 1:
            files = sorted(f.name for f in out.iterdir())
            break
        if p.poll() is not None:
            pytest.fail("training ended before it could be killed:\n" + p.stdout.read())
        time.sleep(0.05)
    _kill_tree(p)
    assert files == ["config.json", "last.pt"], files  # one checkpoint, from rank 0
    done = torch.load(out / "last.pt", weights_only=True)
    assert 1 <= done["epoch"] < 4 and len(done["rngs"]) == 2
    assert not (out / "model.pt").exists()

    r = _torchrun(out)
    log = r.communicate(timeout=600)[0]
    assert r.returncode == 0, log
    assert f"resuming from {out / 'last.pt'} after epoch {done['epoch']}/4" in log, log
    assert log.count("resuming from") == 1 and log.count("trained vae on mnist-sample") == 1, log  # rank 0 alone prints
    assert "2 process(es)" in log
    assert sorted(f.name for f in out.iterdir()) == ["config.json", "history.json", "model.pt"]
    hist = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4] and hist[-1]["loss"] < hist[0]["loss"], hist

    ref = _torchrun(tmp_path / "ref")  # never interrupted
    log = ref.communicate(timeout=600)[0]
    assert ref.returncode == 0, log
    a = torch.load(out / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "ref" / "model.pt", weights_only=True)["model"]
    for k in a:  # resumed = uninterrupted, bit for bit: every rank's random state was in the checkpoint
        assert torch.equal(a[k], b[k]), k
