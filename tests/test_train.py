"""The training engine as a user meets it: killed runs resume, diverging runs stop clearly."""
import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

SCRIPT = textwrap.dedent("""
    import sys, torch
    from dbp_ae.train import train_cached, TrainConfig
    cfg = TrainConfig(epochs=int(sys.argv[2]), batch_size=32, lambda1=0.1, lambda2=0.1, schedule='constant')
    m, hist, folder = train_cached('vae', 'mnist-sample', cfg, dict(hidden=[128, 128], z_dim=8), cache_dir=sys.argv[1], progress=True)
    torch.save(m.state_dict(), sys.argv[3])
    print('FOLDER', folder)
""")


def run_script(cache, epochs, out, **kw):
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(cache), str(epochs), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_sigkill_resumes(tmp_path):
    epochs = 6
    ref = run_script(tmp_path / "ref", epochs, tmp_path / "ref.pt")
    ref_out = ref.communicate(timeout=600)[0]
    assert ref.returncode == 0, ref_out

    p = run_script(tmp_path / "cache", epochs, tmp_path / "killed.pt")
    deadline = time.time() + 300
    last = None
    while time.time() < deadline:  # wait until two epochs are checkpointed, then kill mid-epoch
        found = list((tmp_path / "cache").glob("*/last.pt"))
        if found:
            last = found[0]
            try:
                if torch.load(last, weights_only=True)["epoch"] >= 2:
                    break
            except Exception:  # noqa: BLE001 - being replaced right now; atomic rename means retry reads a whole file
                pass
        if p.poll() is not None:
            pytest.fail("training ended before it could be killed:\n" + p.stdout.read())
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    done_epochs = torch.load(last, weights_only=True)["epoch"]
    assert 2 <= done_epochs < epochs
    assert not (last.parent / "model.pt").exists()

    r = run_script(tmp_path / "cache", epochs, tmp_path / "resumed.pt")
    out = r.communicate(timeout=600)[0]
    assert r.returncode == 0, out
    assert f"after epoch {done_epochs}/{epochs}" in out
    assert f"epoch {done_epochs}/{epochs}:" not in out  # no finished epoch trained again
    hist = json.loads((last.parent / "history.json").read_text())
    assert [h["epoch"] for h in hist] == list(range(1, epochs + 1))
    a, b = torch.load(tmp_path / "ref.pt"), torch.load(tmp_path / "resumed.pt")
    for k in a:  # bitwise the run that was never interrupted
        assert torch.equal(a[k], b[k]), k

    again = run_script(tmp_path / "cache", epochs, tmp_path / "again.pt")
    out = again.communicate(timeout=600)[0]
    assert again.returncode == 0 and "cached:" in out and "epoch 1/" not in out, out


def test_divergence_stops_clearly(tmp_path):
    from dbp_ae.data import load_dataset
    from dbp_ae.train import TrainConfig, TrainingDiverged, fit, make_model, load_checkpoint
    ds = load_dataset("mnist-sample", "test")
    model = make_model("vae", hidden=[32, 32], z_dim=4)
    fit(model, ds, TrainConfig(epochs=1, batch_size=100), ckpt_dir=tmp_path, progress=False)
    bad = TrainConfig(epochs=3, batch_size=100, lr=1.0, lambda1=1e6, lambda2=1e6, schedule="constant")
    with pytest.raises(TrainingDiverged) as e:
        fit(model, ds, bad, ckpt_dir=tmp_path, progress=False)
    msg = str(e.value)
    assert "epoch 2, step" in msg and "lambda1=1000000.0" in msg and "last good checkpoint" in msg
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
