"""Which DistributedDataParallel flags give the right gradients with the DBP double backward.

Run: python benchmarks/ddp_flags.py [--steps 5]
For each set of DDP flags, two gloo processes (CPU) train the tiny MLP VAE through `dbp_ae.train.fit` with per-rank
batch B, DBP on (and, for comparison, off), and the weights are compared with one process trained with batch 2B on the
same permutation. Sampling noise is made a function of the sample so both draw the same. Prints the largest weight
difference per flag set: the defaults stay at float rounding (~1e-6), `static_graph=True` does not (its deferred
first-iteration all-reduce is not triggered for our dataclass outputs). Not a test; tests/test_distributed.py checks
the defaults that `dbp_ae.distributed.Comm.wrap` uses.
"""
import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_distributed import N, _noise_of_mu  # noqa: E402  (the same data size and noise as the test)

FLAGS = {"defaults": {}, "static_graph": dict(static_graph=True), "find_unused_parameters": dict(find_unused_parameters=True),
         "gradient_as_bucket_view": dict(gradient_as_bucket_view=True)}


def _train(rank, world, port, out, flags, lam, steps):
    torch.set_num_threads(1)
    import dbp_ae.vae
    from torch.nn.parallel import DistributedDataParallel
    from dbp_ae.data import load_dataset
    from dbp_ae.distributed import Comm
    from dbp_ae.train import TrainConfig, fit, make_model, _dist_sampler
    dbp_ae.vae.reparameterize = _noise_of_mu
    B = 32
    ds = load_dataset("mnist-sample", "test")
    ds = type(ds)(ds.images[:2 * B * steps], ds.labels[:2 * B * steps], "tiny")  # one epoch of `steps` steps
    cfg = TrainConfig(epochs=1, batch_size=2 * B, lambda1=lam, lambda2=lam, schedule="constant")
    comm, kw = None, dict(sampler_fn=lambda e: _dist_sampler(ds, 1, 0, cfg.seed, e))
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)

        class FlagComm(Comm):
            def wrap(self, model): return DistributedDataParallel(model, **flags)
        comm, kw = FlagComm("cpu"), {}
    torch.manual_seed(0)
    model = make_model("vae", hidden=(32, 32), z_dim=4)
    fit(model, ds, cfg, device="cpu", progress=False, comm=comm, **kw)
    if rank == 0:
        torch.save(model.state_dict(), out)
    if comm is not None:
        dist.destroy_process_group()


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp())
    for lam in (1.0, 0.0):
        _train(0, 1, None, d / "one.pt", {}, lam, a.steps)
        one = torch.load(d / "one.pt")
        for name, flags in FLAGS.items():
            t = time.time()
            mp.spawn(_train, args=(2, _port(), d / "two.pt", flags, lam, a.steps), nprocs=2)
            two = torch.load(d / "two.pt")
            diff = max((one[k] - two[k]).abs().max().item() for k in one)
            print(f"DBP {'on ' if lam else 'off'} {name:<24} max |w(2 ranks x 32) - w(1 x 64)| after {a.steps} steps: {diff:.2e}"
                  f"   ({time.time() - t:.0f} s)", flush=True)
