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


def check_output(path):
    "Fail unless `path` is a real output: a PNG that decodes, is at least 200x150 and not blank; a PDF with its header and end; a non-empty CSV/Markdown/JSON"
    from PIL import Image
    import numpy as np
    path = Path(path)
    assert path.exists(), f"{path} was not written"
    if path.suffix == ".png":
        with Image.open(path) as im:
            assert im.format == "PNG", (path, im.format)
            assert im.width >= 200 and im.height >= 150, (path, im.size)
            g = np.asarray(im.convert("L"), dtype=np.uint8)
        ink = (g < 250).mean()                                 # pixels that are not the white background
        assert 0.005 < ink < 0.995, f"{path} looks blank or filled ({100 * ink:.2f}% non-white pixels)"
    elif path.suffix == ".pdf":
        raw = path.read_bytes()
        assert raw.startswith(b"%PDF-") and b"%%EOF" in raw[-1024:] and len(raw) > 1000, f"{path} is not a complete PDF"
    elif path.suffix == ".csv":
        lines = [l for l in path.read_text().splitlines() if l.strip()]
        assert len(lines) >= 2 and lines[0].count(",") >= 1, f"{path}: no header and row"
    elif path.suffix == ".json":
        import json
        assert json.loads(path.read_text()), f"{path} is empty"
    else:
        assert path.read_text().strip(), f"{path} is empty"
