"""The layout of the package: imports that run one way, thin pipelines that call the library."""
import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG, NBS, PIPES = ROOT / "dbp_ae", ROOT / "nbs", ROOT / "nbs" / "pipelines"
MODEL_MODULES = {"vae", "draw", "classifiers", "train", "distributed", "gmm"}   # modules that define or build models
KNOWN_FORWARD = {("reproduce", "report")}   # 08a_reproduce imports 08d_report: the report was split out of reproduce after it


def notebook_of():
    "module -> the stem of the notebook it is exported from (its place in the reading order)"
    out = {}
    for nb in sorted(NBS.glob("*.ipynb")):
        for c in json.loads(nb.read_text())["cells"]:
            m = re.search(r"#\|\s*default_exp\s+(\S+)", "".join(c["source"]))
            if m: out[m.group(1)] = nb.stem
    return out


def imports(path, top_level_only=False):
    "The package modules `path` imports (relative or `dbp_ae.x`), with the line of each"
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    out = []
    for n in nodes:
        if isinstance(n, ast.ImportFrom):
            if n.level == 1: mods = [n.module] if n.module else [a.name for a in n.names]
            elif n.module == "dbp_ae": mods = [a.name for a in n.names]
            elif n.module and n.module.startswith("dbp_ae."): mods = [n.module.split(".")[1]]
            else: mods = []
        elif isinstance(n, ast.Import): mods = [a.name.split(".")[1] for a in n.names if a.name.startswith("dbp_ae.")]
        else: mods = []
        out += [(m, n.lineno) for m in mods]
    return out


def modules():
    return [p for p in sorted(PKG.glob("*.py")) if not p.stem.startswith("_")]


def test_auddc_is_the_pure_metric():
    got = {m for m, _ in imports(PKG / "auddc.py")}
    assert not got & (MODEL_MODULES | {"attacks", "evaluate"}), got
    assert got <= {"core"}, got


def test_no_module_imports_reproduce_cli_or_pipelines():
    for p in modules():
        for m, line in imports(p):
            assert p.stem == "cli" or m not in ("reproduce", "cli"), f"{p.name}:{line} imports {m}"
            assert m != "pipelines", f"{p.name}:{line} imports the pipelines"
        assert "from pipelines" not in p.read_text() and "import pipelines" not in p.read_text(), p


def test_imports_point_back():
    "A module imports only modules of earlier notebooks (module-level imports; `KNOWN_FORWARD` excepted)"
    order = notebook_of()
    bad = [(p.stem, m, line) for p in modules() for m, line in imports(p, top_level_only=True)
           if m in order and order[m] > order[p.stem] and (p.stem, m) not in KNOWN_FORWARD]
    assert not bad, bad


def pipeline_cells(nb):
    "The code cells of pipeline notebook `nb` besides its parameters cell"
    cells = json.loads(nb.read_text())["cells"]
    return ["".join(c["source"]) for c in cells
            if c["cell_type"] == "code" and "parameters" not in c.get("metadata", {}).get("tags", [])]


@pytest.mark.parametrize("nb", sorted(PIPES.glob("*.ipynb")), ids=lambda p: p.stem)
def test_pipeline_is_thin(nb):
    cells = pipeline_cells(nb)
    lines = [l for s in cells for l in s.splitlines() if l.strip() and not l.strip().startswith("#")]
    assert len(lines) <= 65, f"{nb.name}: {len(lines)} code lines besides the parameters cell (at most about 60)"
    for s in cells:
        for n in ast.walk(ast.parse(s)):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                assert n.end_lineno == n.lineno, f"{nb.name}: {n.name} is longer than a line: it belongs in the library"
    code = "\n".join(cells)
    assert "set_num_threads" not in code, f"{nb.name} sets torch's threads itself (dbp_ae.params.setup_run does)"
    assert "setup_run(" in code, f"{nb.name} does not call dbp_ae.params.setup_run"


@pytest.mark.skipif(shutil.which("duplicates") is None, reason="the `duplicates` tool is not installed")
def test_pipelines_share_no_code(tmp_path):
    "With their code cells (parameters cells aside) as .py files, no two pipelines share a run of six lines of the same shape"
    for nb in PIPES.glob("*.ipynb"):
        code = "\n\n".join(pipeline_cells(nb))
        (tmp_path / f"{nb.stem}.py").write_text("\n".join(l for l in code.splitlines() if not l.lstrip().startswith(("%", "!", "#|"))))
    r = subprocess.run(["duplicates", "--seconds", "30"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.stdout.startswith("no duplicates"), r.stdout


def test_one_entry_point():
    import dbp_ae.distributed as d
    assert not hasattr(d, "main") and not hasattr(d, "build_parser"), "dbp_ae.distributed keeps the DDP machinery only; the parser is dbp_ae.cli's"
    r = subprocess.run([sys.executable, "-m", "dbp_ae.cli", "train", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--model" in r.stdout and "--amp" in r.stdout, r.stderr


@pytest.mark.parametrize("nb", sorted(PIPES.glob("0*.ipynb")), ids=lambda p: p.stem)
def test_papermill_reads_every_parameter(nb):
    "papermill sees each declared parameter in the `parameters` cell (a comment it cannot parse hides the name: `-p` then warns of an unknown parameter)"
    from papermill.translators import PythonTranslator
    from dbp_ae.params import PARAMS
    cell = next(c for c in json.loads(nb.read_text())["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    seen = {p.name for p in PythonTranslator.inspect({"source": "".join(cell["source"])})}
    assert seen == set(PARAMS[nb.stem]), (sorted(set(PARAMS[nb.stem]) - seen), sorted(seen - set(PARAMS[nb.stem])))
