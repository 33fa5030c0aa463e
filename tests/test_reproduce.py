"""`dbp-ae reproduce`: the smoke profile on real pipelines, resume after SIGKILL, bad names, missing data."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from dbp_ae.cli import main
from pipeline_runner import check_output  # tests/ is on sys.path under pytest
from dbp_ae import report


def cmd(*args):
    exe = shutil.which("dbp-ae")
    return [exe, *args] if exe else [sys.executable, "-c", "import sys; from dbp_ae.cli import main; sys.exit(main())", *args]


def run(*args, timeout=300):
    return subprocess.run(cmd(*args), capture_output=True, text=True, timeout=timeout)


def run_here(capsys, *args):
    "`dbp-ae` in this process (no interpreter start-up): (exit status, stdout, stderr)"
    code = main(list(args))
    o = capsys.readouterr()
    return code, o.out, o.err


def wait_for(cond, proc, timeout, what):
    t0 = time.time()
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"dbp-ae reproduce exited ({proc.returncode}) before {what}:\n{proc.stdout.read()}")
        if time.time() - t0 > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_smoke_killed_then_resumed(tmp_path, capsys):
    "A smoke run killed (SIGKILL) inside its second pipeline finishes on the next run without retraining anything"
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["reproduce", "--profile", "smoke", "--only", "table1,fig2", "--out", str(out), "--cache-dir", str(cache), "--quiet",
            "--set", "01_reconstruction.models=vae"]   # Table 1 of the VAE only: the DRAW models would only make the test slower
    folder = out / "smoke" / "mnist-sample"
    stamp1, stamp2 = folder / ".stamps" / "01_reconstruction.json", folder / ".stamps" / "02_vae_gradients.json"
    executed2 = out / "runs" / "02_vae_gradients-mnist-sample-smoke.ipynb"
    proc = subprocess.Popen(cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    wait_for(stamp1.exists, proc, 240, "01_reconstruction was rendered")
    wait_for(executed2.exists, proc, 60, "02_vae_gradients started")
    os.killpg(proc.pid, signal.SIGKILL)          # the driver and its kernel: a hard kill in the middle of 02
    proc.wait()
    assert not stamp2.exists(), "02_vae_gradients finished before the kill; the test did not interrupt it"
    trained = {p: p.stat().st_mtime_ns for p in cache.glob("*/model.pt")}
    assert len(trained) == 2, trained              # 01 trained the VAE plain and with DBP
    first = json.loads(stamp1.read_text())
    assert first["params"]["smoke"] is True and first["params"]["models"] == "vae" and len(first["models_trained"]) == 2

    r = run(*args)                                 # the same command again
    assert r.returncode == 0, r.stdout + r.stderr
    assert "01_reconstruction[mnist-sample] (table1, fig4)" in r.stdout
    assert "already rendered with the same settings" in r.stdout and "running 02_vae_gradients.ipynb" in r.stdout
    assert "done in" in r.stdout and "(0 model(s) trained, the others from the cache)" in r.stdout, r.stdout
    assert {p: p.stat().st_mtime_ns for p in cache.glob("*/model.pt")} == trained   # nothing retrained
    assert json.loads(stamp1.read_text()) == first                                   # 01 not rerun
    second = json.loads(stamp2.read_text())
    assert second["models_trained"] == [] and second["params"]["cache_dir"] == str(cache.resolve())
    for f in ("table1.md", "table1_metrics.json", "fig4.png", "fig2.png", "fig2_metrics.json"):
        check_output(folder / f)
    rep = (out / "REPORT.md").read_text()
    assert rep.startswith("# Reproduction report (smoke profile)") and "Smoke run" in rep
    assert "| 01_reconstruction[mnist-sample] | table1, fig4 | done before |" in rep and "| 02_vae_gradients[mnist-sample] | fig2 | rendered |" in rep
    assert "| Table 1 | `smoke/mnist-sample` · vae: **preview (would be: " in rep        # a smoke run is never evidence
    assert "| Fig. 3 | not rendered: mnist-sample: 03_gmm_transition: not asked for in this run" in rep
    assert "![fig4.png](smoke/mnist-sample/fig4.png)" in rep and "![fig2.png](smoke/mnist-sample/fig2.png)" in rep
    assert "DBP cuts the gradient magnitude at about the same reconstruction error" in rep and "131.874" in rep
    assert report.broken_links(out / "REPORT.md") == []

    code, o, _ = run_here(capsys, *args)           # everything rendered: skipped, exit 0
    assert code == 0 and o.count("already rendered with the same settings") == 2, o
    code, o, _ = run_here(capsys, *args, "--only", "fig2")   # a run asking for less: the report keeps what was rendered before
    assert code == 0 and "01_reconstruction" not in o and "| Table 1 | `smoke/mnist-sample` · vae: **preview" in (out / "REPORT.md").read_text()


def test_unknown_names_fail_with_the_valid_ones(tmp_path, capsys):
    r = run("reproduce", "--only", "nonsense,fig2", "--out", str(tmp_path))     # the console script, as a user runs it
    assert r.returncode == 2
    assert "unknown name 'nonsense' in --only; valid: fig1, fig2, fig3, fig4, fig5, fig6, table1, table2, table3, table4, tradeoff, 01_reconstruction" in r.stderr
    code, _, err = run_here(capsys, "reproduce", "--datasets", "cifar10", "--out", str(tmp_path))
    assert code == 2 and "valid: celeba, mnist, mnist-sample, svhn" in err
    code, _, err = run_here(capsys, "reproduce", "--set", "nonsense.epochs=3", "--out", str(tmp_path))
    assert code == 2 and "unknown pipeline 'nonsense'; valid: 01_reconstruction" in err
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "--profile", "fast"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "invalid choice: 'fast'" in err and all(p in err for p in ("smoke", "quick", "paper"))
    assert not (tmp_path / "REPORT.md").exists()


def test_missing_data_is_skipped_with_the_fix(tmp_path, capsys):
    "The paper profile on a data root without MNIST and CelebA: both skipped with the reason, REPORT.md says so, exit 1"
    empty = tmp_path / "nodata"
    empty.mkdir()
    code, o, _ = run_here(capsys, "reproduce", "--profile", "paper", "--only", "table1", "--data-dir", str(empty), "--out", str(tmp_path / "out"))
    assert code == 1, o
    assert "SKIPPED (data missing): mnist: missing train-images-idx3-ubyte" in o
    assert f"in {empty.resolve()}/MNIST/raw. Fix: put the files there" in o and "--data-dir" in o
    assert "SKIPPED (data missing): celeba: missing img_align_celeba, list_eval_partition.txt" in o
    assert "0 of 2 task(s) rendered" in o
    rep = (tmp_path / "out" / "REPORT.md").read_text()
    row = next(l for l in rep.splitlines() if l.startswith("| Table 1 |"))
    assert row.startswith("| Table 1 | not rendered: mnist: 01_reconstruction: mnist: missing train-images-idx3-ubyte") and "celeba: 01_reconstruction: celeba: missing" in row, row
    assert "| 01_reconstruction[mnist] | table1, fig4 | skipped: mnist: missing" in rep
    row = next(l for l in rep.splitlines() if l.startswith("| Fig. 3 |"))
    assert row.startswith("| Fig. 3 | not rendered: mnist: 03_gmm_transition: mnist: missing"), row   # the tasks not asked for: why


def test_quick_celeba_plan(tmp_path):
    "The CelebA preview runs 01, 04 and 05 on CelebA only, with parameters every notebook accepts, within the 15-minute estimate"
    from dbp_ae.reproduce import plan, check_notebooks, PROFILES, pipelines_dir
    tasks = plan("quick-celeba", out_dir=tmp_path)
    assert [(t.pipeline, t.dataset) for t in tasks] == [("01_reconstruction", "celeba"), ("04_vae_attack", "celeba"), ("05_draw_attack", "celeba")]
    assert all(t.params["threads"] == 1 and not t.params.get("smoke") for t in tasks)
    check_notebooks(tasks, pipelines_dir())
    check_notebooks(plan("paper", None, "celeba", out_dir=tmp_path), pipelines_dir())   # every pipeline that takes CelebA accepts the paper profile on it
    assert sum(r["est"] for r in PROFILES["quick-celeba"]["pipelines"].values()) <= 15 * 60


def test_stamp_is_of_the_code_that_ran(tmp_path, monkeypatch):
    "A pipeline notebook edited while it runs is not stamped as rendered with the edited code: the next run renders it again"
    import papermill as pm
    from dbp_ae.reproduce import plan, run_task, is_done, PIPELINES, pipelines_dir
    src = pipelines_dir() / "02_vae_gradients.ipynb"
    nb = tmp_path / "nbs" / src.name; nb.parent.mkdir(); shutil.copy(src, nb)
    task = next(t for t in plan("smoke", "02", out_dir=tmp_path / "out") if t.pipeline == "02_vae_gradients")
    def fake_execute(path, out, **kw):   # the run: its outputs appear, and meanwhile someone edits the notebook
        task.folder.mkdir(parents=True, exist_ok=True)
        for f in PIPELINES[task.pipeline]["outputs"]: (task.folder / f).write_text("x")
        d = json.loads(nb.read_text()); d["cells"].append({"cell_type": "code", "metadata": {}, "source": ["1 + 1"], "outputs": [], "execution_count": None})
        nb.write_text(json.dumps(d))
    monkeypatch.setattr(pm, "execute_notebook", fake_execute)
    run_task(task, nb, quiet=True, log=lambda *a: None)
    assert not is_done(task, nb)   # the stamp holds the hash of the code before the edit
