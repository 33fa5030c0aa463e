"""Fault tests (issue 17): bad parameters refused before work starts, a model cache that heals, one trainer per model,
a full disk, a SIGKILL during `dbp-ae reproduce`, and metrics that refuse non-finite input."""
import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from dbp_ae.cli import main
from dbp_ae.data import load_dataset
from dbp_ae import train as T
from dbp_ae.train import (TrainConfig, train_cached, cache_folder, fit, make_model, save_atomic, load_checkpoint, with_checksum,
                          BadCheckpoint, folder_lock, lock_path)

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(hidden=[16, 16], z_dim=4)


def env():
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def run_cli(*args, timeout=120):
    "`dbp-ae` as a user runs it, in a fresh interpreter; a hang fails the test cleanly"
    cmd = [sys.executable, "-c", "import sys; from dbp_ae.cli import main; sys.exit(main())", *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env())
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"dbp-ae {' '.join(args)} did not finish in {timeout} s:\n{e.stdout}\n{e.stderr}")


def tiny_ds(n=128):
    ds = load_dataset("mnist-sample", "test")
    return type(ds)(ds.images[:n], ds.labels[:n], "tiny")


# ---------------------------------------------------------------- bad parameters: exit 2, nothing runs

def test_cli_refuses_bad_values_before_running(tmp_path):
    out = tmp_path / "out"
    r = run_cli("reproduce", "--only", "table1", "--set", "epochs=-2", "--out", str(out), "--cache-dir", str(tmp_path / "c"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--set epochs=-2: 01_reconstruction: epochs must be an integer >= 1, got -2" in r.stderr
    assert not out.exists() and not (tmp_path / "c").exists()          # nothing ran, nothing was written


@pytest.mark.parametrize("args,msg", [
    (["--set", "nonsense_key=3"], "no pipeline has a parameter 'nonsense_key'; valid keys: aa_iter, aa_restarts, attack_lr"),
    (["--set", "epoch=3"], "(did you mean 'epochs'?)"),
    (["--set", "01_reconstruction.n_pairs=3"], "01_reconstruction: unknown parameter 'n_pairs'; valid: dataset, models, epochs"),
    (["--set", "lr=0"], "lr must be a number > 0, got 0"),
    (["--set", "lambda1=-1"], "lambda1 must be a number >= 0, got -1"),
    (["--set", "batch_size=1.5"], "batch_size must be an integer >= 1, got 1.5 (float)"),
    (["--set", "smoke=1"], "smoke must be True or False, got 1"),
    (["--set", "estimator=exakt"], "unknown estimator 'exakt'; valid: sum, hutchinson, exact"),
    (["--set", "schedule=linear"], "unknown schedule 'linear'; valid: constant, second-half, warmup"),
    (["--set", "n_pairs=0", "--only", "table2"], "n_pairs must be an integer >= 1, got 0"),
    (["--set", "05_draw_attack.variants=draw:T=0"], "T=0 must be an integer >= 1"),
    (["--set", "06_classifier_robustness.eps=0.1,2"], "outside (0, 1]"),
    (["--set", "dataset=svhn"], "use --datasets"),
    (["--set", "epochs"], "expected KEY=VALUE"),
    (["--device", "gpu"], "device must be one of auto, cpu, cuda, cuda:N, mps or None"),
])
def test_cli_refuses_bad_sets(tmp_path, capsys, args, msg):
    code = main(["reproduce", "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert code == 2 and msg in err, err
    assert not (tmp_path / "out").exists()


def test_train_config_refuses_impossible_values():
    for kw, msg in [(dict(epochs=-2), "epochs must be an integer >= 1, got -2"), (dict(batch_size=0), "batch_size must be an integer >= 1"),
                    (dict(lr=-1e-3), "lr must be a finite number > 0"), (dict(lambda2=-.5), "lambda2 must be a finite number >= 0"),
                    (dict(schedule="cosine"), "unknown schedule 'cosine'; valid: constant, second-half, warmup"),
                    (dict(estimator="jvp"), "unknown estimator 'jvp'; valid: sum, hutchinson, exact, fd"), (dict(epochs="3"), "got '3'")]:
        with pytest.raises(ValueError, match=None) as e:
            TrainConfig(**kw)
        assert msg in str(e.value), (kw, str(e.value))
    with pytest.raises(TypeError, match="cfg must be a TrainConfig, not dict"):
        train_cached("vae", "mnist-sample", dict(epochs=1))


# ---------------------------------------------------------------- the cache heals

def test_damaged_model_is_set_aside_and_retrained(tmp_path):
    ds, cfg = tiny_ds(), TrainConfig(epochs=1, batch_size=64)
    m0, h0, folder = train_cached("vae", "mnist-sample", cfg, SMALL, cache_dir=tmp_path, progress=False, train_ds=ds)
    done = folder / "model.pt"
    done.write_bytes(done.read_bytes()[:1000])                       # truncated, as a full disk or a killed copy leaves it
    with pytest.warns(RuntimeWarning) as w:
        m1, h1, _ = train_cached("vae", "mnist-sample", cfg, SMALL, cache_dir=tmp_path, progress=False, train_ds=ds)
    msg = " ".join(str(x.message) for x in w)
    assert f"checkpoint {done.resolve()} does not load" in msg and "moved it aside to" in msg, msg
    aside = sorted(folder.glob("model.pt.bad-*"))
    assert len(aside) == 1 and aside[0].stat().st_size == 1000         # kept, not deleted
    assert h1 == h0 and all(torch.equal(a, b) for a, b in zip(m0.state_dict().values(), m1.state_dict().values()))
    load_checkpoint(done)                                             # the new one loads and its checksum holds


def test_damaged_last_checkpoint_restarts_from_scratch(tmp_path):
    ds, cfg = tiny_ds(), TrainConfig(epochs=2, batch_size=64)
    torch.manual_seed(0); ref = make_model("vae", **SMALL); fit(ref, ds, cfg, progress=False)
    (tmp_path / "last.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    torch.manual_seed(0); m = make_model("vae", **SMALL)
    with pytest.warns(RuntimeWarning, match="training starts from scratch"):
        hist = fit(m, ds, cfg, ckpt_dir=tmp_path, progress=False)
    assert [h["epoch"] for h in hist] == [1, 2] and len(list(tmp_path.glob("last.pt.bad-*"))) == 1
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), m.state_dict().values()))


def test_checksum_mismatch_is_a_bad_file(tmp_path):
    ck = with_checksum(dict(model={"w": torch.arange(6.).view(2, 3)}, epoch=3))
    ck["model"]["w"][1, 2] = 0.                                        # a flipped value after the checksum was taken
    save_atomic(ck, tmp_path / "m.pt")
    with pytest.raises(BadCheckpoint, match="do not match their checksum"):
        load_checkpoint(tmp_path / "m.pt")


def test_full_disk_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    "A write that raises midway (ENOSPC) leaves the previous checkpoint whole and loadable, and no temporary file"
    good = with_checksum(dict(model={"w": torch.ones(50, 50)}, epoch=1))
    save_atomic(good, tmp_path / "last.pt")
    before = (tmp_path / "last.pt").read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        with open(f, "r+b") as fh:                                     # half the bytes reached the disk, then it filled up
            fh.truncate(os.path.getsize(f) // 2)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_atomic(with_checksum(dict(model={"w": torch.zeros(50, 50)}, epoch=2)), tmp_path / "last.pt")
    monkeypatch.undo()
    assert (tmp_path / "last.pt").read_bytes() == before
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]   # the partial temporary file is gone


def test_full_disk_during_training_resumes_from_the_last_good_epoch(tmp_path, monkeypatch):
    ds, cfg = tiny_ds(), TrainConfig(epochs=3, batch_size=64)
    torch.manual_seed(0); ref = make_model("vae", **SMALL); fit(ref, ds, cfg, progress=False)
    real, calls = T.save_atomic, []

    def fails_second(obj, path):
        calls.append(obj["epoch"])
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(obj, path)
    monkeypatch.setattr(T, "save_atomic", fails_second)
    torch.manual_seed(0); m = make_model("vae", **SMALL)
    with pytest.raises(OSError):
        fit(m, ds, cfg, ckpt_dir=tmp_path, progress=False)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    torch.manual_seed(0); m = make_model("vae", **SMALL)
    fit(m, ds, cfg, ckpt_dir=tmp_path, progress=False)                # resumes after epoch 1: the same weights as uninterrupted
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), m.state_dict().values()))


# ---------------------------------------------------------------- one trainer per model

TRAIN_ONE = textwrap.dedent("""
    import sys, torch
    from dbp_ae.data import load_dataset
    from dbp_ae.train import TrainConfig, train_cached
    ds = load_dataset('mnist-sample', 'test'); ds = type(ds)(ds.images[:128], ds.labels[:128], 'tiny')
    train_cached('vae', 'mnist-sample', TrainConfig(epochs=1, batch_size=64), dict(hidden=[16, 16], z_dim=4),
                 cache_dir=sys.argv[1], train_ds=ds, progress=True)
    print('DONE', flush=True)
""")


def test_second_process_waits_and_reads_the_first_ones_model(tmp_path):
    cache, other = tmp_path / "cache", tmp_path / "other"
    cfg = TrainConfig(epochs=1, batch_size=64)
    folder = cache_folder("vae", "mnist-sample", cfg, SMALL, cache_dir=cache)[0]
    with folder_lock(folder, log=lambda m: None):                      # this process is "the first": it holds the lock
        p = subprocess.Popen([sys.executable, "-c", TRAIN_ONE, str(cache)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=env(), start_new_session=True)
        try:
            lines, t0 = [], time.time()
            while not any("waiting for" in l for l in lines):
                if time.time() - t0 > 120 or p.poll() is not None:
                    pytest.fail("the second process did not wait for the lock:\n" + "".join(lines) + (p.stdout.read() if p.poll() is not None else ""))
                lines.append(p.stdout.readline())
            assert f'"pid": {os.getpid()}' in lines[-1], lines[-1]     # it names who it waits for
            train_cached("vae", "mnist-sample", cfg, SMALL, cache_dir=other, train_ds=tiny_ds(), progress=False)
            folder.mkdir(parents=True)
            for f in ("config.json", "history.json", "model.pt"):         # the first one's result appears in the folder
                shutil.copy(other / folder.name / f, folder / f)
        except BaseException:
            os.killpg(p.pid, signal.SIGKILL); raise
    try:
        rest = p.communicate(timeout=120)[0]
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL); pytest.fail("the second process did not finish after the lock was released")
    log = "".join(lines) + rest
    assert p.returncode == 0 and "DONE" in log, log
    assert "cached: vae on mnist-sample (plain)" in log and "epoch 1/1" not in log, log   # loaded, not trained again


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    folder = tmp_path / "cache" / "vae-x"
    code = f"from dbp_ae.train import folder_lock\nimport time\nwith folder_lock({str(folder)!r}):\n    print('HELD', flush=True); time.sleep(300)"
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env())
    try:
        assert p.stdout.readline().strip() == "HELD"
    finally:
        p.kill(); p.wait(timeout=30)                                      # SIGKILL: it never released the lock
    said, t0 = [], time.time()
    with folder_lock(folder, timeout=20, log=said.append):
        pass
    assert time.time() - t0 < 10, "the dead process's lock was waited for"
    assert said and "taking over the stale lock" in said[0] and f'"pid": {p.pid}' in said[0] and "that process is gone" in said[0], said


def test_lock_wait_times_out_naming_the_holder(tmp_path):
    folder = tmp_path / "f"
    with folder_lock(folder, log=lambda m: None):
        code = f"from dbp_ae.train import folder_lock\nwith folder_lock({str(folder)!r}, timeout=1, poll=0.1): pass"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=120)
    assert r.returncode != 0 and "TimeoutError" in r.stderr and f"{lock_path(folder)} still held after 1 s" in r.stderr, r.stderr


# ---------------------------------------------------------------- non-finite input

def test_metrics_refuse_non_finite_input():
    from dbp_ae.dbp import gradient_metrics, spectral_norms
    from dbp_ae.auddc import dd_points
    from dbp_ae.evaluate import recon_dist
    from dbp_ae.gmm import fit_class_gmms, GMMClassifier, transition
    torch.manual_seed(0)
    vae = make_model("vae", **SMALL).eval()
    x = torch.rand(4, 1, 28, 28); x[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="x holds 1 non-finite value"):
        gradient_metrics(vae, x)
    xx = torch.rand(2, 1, 28, 28).requires_grad_(True)
    y = vae(xx, sample=False).mu.flatten(1) * float("inf")
    with pytest.raises(ValueError, match="y holds 8 non-finite"):
        spectral_norms(y, xx)
    with pytest.raises(ValueError, match="dist_orig holds 1 non-finite"):
        dd_points(np.ones((2, 3)), np.ones(2), np.ones((2, 3)), np.array([1., np.inf]), np.zeros(2))
    with pytest.raises(ValueError, match="ref holds 1 non-finite"):
        recon_dist(vae, torch.rand(2, 1, 28, 28), x[:2])
    codes, labels = np.random.default_rng(0).normal(size=(40, 4)), np.arange(40) % 2
    bad = codes.copy(); bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="codes holds 1 non-finite"):
        fit_class_gmms(bad, labels, n_components=2)
    with pytest.raises(ValueError, match="codes is empty"):
        fit_class_gmms(np.zeros((0, 4)), np.zeros(0), n_components=2)
    clf = GMMClassifier(vae, fit_class_gmms(codes, labels, n_components=2))
    with pytest.raises(ValueError, match="x holds 1 non-finite"):
        clf(x)
    with pytest.raises(ValueError, match="x holds 1 non-finite"):
        transition(clf, x[1], 0, steps=2)
    with pytest.raises(ValueError, match="step_size must be a finite number > 0"):
        transition(clf, x[0], 0, steps=2, step_size=float("nan"))


# ---------------------------------------------------------------- SIGKILL during dbp-ae reproduce, then a restart

def strip_timing(o):
    "`o` without timing fields (seconds, times, dates), which differ between runs"
    if isinstance(o, dict):
        return {k: strip_timing(v) for k, v in o.items() if not any(t in k.lower() for t in ("second", "time", "finished", "started"))}
    if isinstance(o, list):
        return [strip_timing(v) for v in o]
    return o


def reproduce_cmd(out, cache):
    return [sys.executable, "-c", "import sys; from dbp_ae.cli import main; sys.exit(main())", "reproduce", "--profile", "smoke",
            "--only", "01", "--set", "01_reconstruction.models=vae", "--out", str(out), "--cache-dir", str(cache), "--quiet"]


def test_sigkill_during_reproduce_then_restart_gives_the_same_metrics(tmp_path):
    ref_out, ref_cache, out, cache = (tmp_path / n for n in ("ref", "ref-cache", "out", "cache"))
    r = subprocess.run(reproduce_cmd(ref_out, ref_cache), capture_output=True, text=True, env=env(), timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    p = subprocess.Popen(reproduce_cmd(out, cache), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(), start_new_session=True)
    t0 = time.time()
    while not list(cache.glob("*/last.pt")) and not list(cache.glob("*/model.pt")):   # killed while it trains
        if p.poll() is not None:
            pytest.fail("dbp-ae reproduce ended before it could be killed:\n" + p.stdout.read())
        if time.time() - t0 > 300:
            os.killpg(p.pid, signal.SIGKILL); pytest.fail("dbp-ae reproduce did not start training in 300 s")
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)                                   # the driver and its notebook kernel
    p.wait(timeout=60)
    metrics = out / "smoke" / "mnist-sample" / "table1_metrics.json"
    assert not metrics.exists()
    r = subprocess.run(reproduce_cmd(out, cache), capture_output=True, text=True, env=env(), timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    ref = ref_out / "smoke" / "mnist-sample" / "table1_metrics.json"
    assert strip_timing(json.loads(metrics.read_text())) == strip_timing(json.loads(ref.read_text()))
    assert (out / "smoke" / "mnist-sample" / "table1.md").read_text().splitlines()[1:] == (ref_out / "smoke" / "mnist-sample" / "table1.md").read_text().splitlines()[1:]
