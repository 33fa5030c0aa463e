"""Every pipeline notebook runs through papermill in smoke mode and writes its figures, tables and metrics."""
import json
import math
from pathlib import Path

import papermill as pm
import pytest

PIPES = Path(__file__).resolve().parents[1] / "nbs" / "pipelines"


def run(name, tmp_path, **params):
    out = tmp_path / "out"
    params = dict(smoke=True, seed=0, out_dir=str(out), cache_dir=str(tmp_path / "cache"), **params)
    pm.execute_notebook(str(PIPES / name), str(tmp_path / f"executed-{name}"), parameters=params,
                        cwd=str(PIPES), progress_bar=False, kernel_name="python3")
    return out / "smoke" / params.get("dataset", "mnist-sample")


def test_reconstruction_smoke(tmp_path):
    out = run("01_reconstruction.ipynb", tmp_path, dataset="mnist-sample", models="vae,draw-attn")
    for f in ("table1.csv", "table1.md", "fig4.png", "fig4.pdf", "table1_metrics.json"):
        assert (out / f).stat().st_size > 0, f
    m = json.loads((out / "table1_metrics.json").read_text())
    assert m["smoke"] is True and set(m["models"]) == {"vae", "draw-attn"}
    for r in m["models"].values():
        for run_ in ("plain", "dbp"):
            assert 0 < r[run_]["rec_error"] < 28  # an L2 distance of 784 pixels in [0, 1]
            assert all(math.isfinite(r[run_][k]) and r[run_][k] >= 0 for k in ("grad_x", "grad_z", "fro_x", "spec_x"))
        assert math.isfinite(r["grad_x_ratio"]) and r["grad_x_ratio"] > 0
    assert "| grad_x ratio" in (out / "table1.md").read_text()


def test_reconstruction_rejects_unknown(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="valid: mnist, mnist-sample, celeba"):
        run("01_reconstruction.ipynb", tmp_path, dataset="cifar10")
    with pytest.raises(pm.PapermillExecutionError, match="unknown model 'gan'"):
        run("01_reconstruction.ipynb", tmp_path, dataset="mnist-sample", models="vae,gan")
