"""Run a pipeline notebook through papermill in smoke mode (shared by the pipeline tests)."""
from pathlib import Path

import papermill as pm

PIPES = Path(__file__).resolve().parents[1] / "nbs" / "pipelines"


def run(name, tmp_path, **params):
    "Execute pipeline `name` with `smoke=True` and `params` into `tmp_path`; returns its output folder"
    out = tmp_path / "out"
    params = dict(smoke=True, seed=0, out_dir=str(out), cache_dir=str(tmp_path / "cache"), **params)
    pm.execute_notebook(str(PIPES / name), str(tmp_path / f"executed-{name}"), parameters=params,
                        cwd=str(PIPES), progress_bar=False, kernel_name="python3")
    return out / "smoke" / params.get("dataset", "mnist-sample")
