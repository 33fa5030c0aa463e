"""Every pipeline notebook runs through papermill in smoke mode and writes its figures, tables and metrics."""
import json
import math

import papermill as pm
import pytest

from dbp_ae.data import load_dataset

from pipeline_runner import run, check_output  # tests/ is on sys.path under pytest


def csv_rows(path):
    "Rows of a CSV table written by a pipeline, as dicts keyed by the first column"
    import csv
    rows = list(csv.DictReader(path.open()))
    return {r[next(iter(r))]: r for r in rows}


def same_5(a, b):
    "`a` and `b` agree to the 5 significant digits the pipelines' CSV tables keep"
    return math.isclose(float(a), float(b), rel_tol=1e-4)


def test_reconstruction_smoke(tmp_path):
    out = run("01_reconstruction.ipynb", tmp_path, dataset="mnist-sample", models="vae,draw-attn")
    for f in ("table1.csv", "table1.md", "fig4.png", "fig4.pdf", "table1_metrics.json"):
        check_output(out / f)
    m = json.loads((out / "table1_metrics.json").read_text())
    assert m["smoke"] is True and set(m["models"]) == {"vae", "draw-attn"}
    table = csv_rows(out / "table1.csv")
    for name, r in m["models"].items():
        for run_, col in (("plain", "rec_error plain"), ("dbp", "rec_error DBP")):
            assert r[run_]["rec_error"] > 0 and same_5(r[run_]["rec_error"], table[name][col])   # the table shows the metric
            assert all(math.isfinite(r[run_][k]) and r[run_][k] >= 0 for k in ("grad_x", "grad_z", "fro_x", "spec_x"))
        assert math.isfinite(r["grad_x_ratio"]) and r["grad_x_ratio"] > 0
    assert "| grad_x ratio" in (out / "table1.md").read_text()


def test_reconstruction_in_parts(tmp_path):
    "Table 1 and Fig. 4 rendered one model at a time: a second run at the same settings keeps the first run's rows; other settings replace them"
    out = run("01_reconstruction.ipynb", tmp_path, dataset="mnist-sample", models="vae")
    first = json.loads((out / "table1_metrics.json").read_text())["models"]["vae"]
    run("01_reconstruction.ipynb", tmp_path, dataset="mnist-sample", models="draw-attn")
    m = json.loads((out / "table1_metrics.json").read_text())
    assert list(m["models"]) == ["vae", "draw-attn"] and m["models"]["vae"] == first
    assert list(csv_rows(out / "table1.csv")) == ["vae", "draw-attn"]
    from dbp_ae.plots import load_rows
    assert [n for n, _ in load_rows(out / "fig4_rows.npz")] == ["original", "vae plain", "vae DBP", "draw-attn plain", "draw-attn DBP"]
    run("01_reconstruction.ipynb", tmp_path, dataset="mnist-sample", models="draw-attn", lambda1=0.5)   # other settings: the table starts again
    assert list(json.loads((out / "table1_metrics.json").read_text())["models"]) == ["draw-attn"]
    assert [n for n, _ in load_rows(out / "fig4_rows.npz")] == ["original", "draw-attn plain", "draw-attn DBP"]


def test_fig4_paper_layout(tmp_path, data_dir):
    "Once MNIST and CelebA are rendered into one tree, Fig. 4 is drawn as the paper lays it out: MNIST left, CelebA right"
    mn = run("01_reconstruction.ipynb", tmp_path, dataset="mnist", models="vae", data_dir=str(data_dir))
    assert (mn / "fig4_rows.npz").exists() and not (mn.parent / "celeba" / "fig4_paper.png").exists()
    ce = run("01_reconstruction.ipynb", tmp_path, dataset="celeba", models="conv-vae", data_dir=str(data_dir))
    check_output(ce / "fig4_paper.png"); check_output(ce / "fig4_paper.pdf")
    from dbp_ae.plots import load_rows
    assert [n for n, _ in load_rows(mn / "fig4_rows.npz")] == ["original", "vae plain", "vae DBP"]
    assert [tuple(x.shape[1:]) for _, x in load_rows(ce / "fig4_rows.npz")] == [(3, 64, 64)] * 3


def test_reconstruction_rejects_unknown(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="valid: mnist, mnist-sample, celeba"):
        run("01_reconstruction.ipynb", tmp_path, dataset="cifar10")
    with pytest.raises(pm.PapermillExecutionError, match="unknown model 'gan'"):
        run("01_reconstruction.ipynb", tmp_path, dataset="mnist-sample", models="vae,gan")


# ---- the attack pipelines: Fig. 2 (02), Table 2 and Fig. 5 of the VAE (04), Table 2, Figs. 1 and 5 of DRAW (05) ----

def finite(v):
    return v is not None and math.isfinite(v)


def check_auddc(r, n_pairs, n_c):
    "The per-pair AUDDC summary `r` of one model and attack in a metrics file"
    assert r["n"] + r["n_nan"] == n_pairs == len(r["auddc"]) == len(r["gap"])
    assert r["n_nan"] == 0 and all(finite(a) for a in r["auddc"]) and finite(r["mean"])
    for a, lo, hi, xm in zip(r["auddc"], r["y_min"], r["y_max"], r["x_max"]):
        assert 0 <= xm, xm                       # x = ||d|| / ||x_o - x_t||
        if 0 <= lo and hi <= 1:                  # a well-formed curve: its area lies in [0, 1]
            assert 0 <= a <= 1, (a, lo, hi)


def test_vae_gradients_smoke(tmp_path):
    out = run("02_vae_gradients.ipynb", tmp_path, dataset="mnist-sample")
    for f in ("fig2.png", "fig2.pdf", "fig2.csv", "fig2.md", "fig2_metrics.json"):
        check_output(out / f)
    m = json.loads((out / "fig2_metrics.json").read_text())
    assert m["smoke"] is True and m["model"] == "vae" and len(m["cs"]) == 5 and m["cs"][0] == 0
    labels = load_dataset("mnist-sample", "test").labels.tolist()
    o, t = m["pair"]
    assert labels[o] != labels[t]                # the target is of another class
    table = csv_rows(out / "fig2.csv")
    assert set(table) == {"vae (no DBP)", "vae (DBP)"}
    for r, row in zip(m["models"].values(), (table["vae (no DBP)"], table["vae (DBP)"])):
        assert r["rec_error"] > 0 and same_5(r["rec_error"], row["rec_error"]) and same_5(r["grad_x"], row["grad_x"])
        assert finite(r["grad_x"]) and r["grad_x"] > 0
        assert r["C"] > 0 and 0 <= r["x"] and finite(r["y"]) and finite(r["auddc"])
        assert r["matched"] is False or abs(r["x"] - 0.3) <= 0.005, r   # shown at the matched input distortion, or said not to be
        assert len(r["curve_x"]) == len(r["curve_y"]) == 5
    assert m["pair_rule"].startswith("the median-AUDDC pair (no DBP, output attack) of the first 3 seeded pairs")
    assert finite(m["grad_x_ratio"]) and m["grad_x_ratio"] > 0
    assert "grad_x" in (out / "fig2.md").read_text()


def test_vae_attack_smoke(tmp_path):
    out = run("04_vae_attack.ipynb", tmp_path, dataset="mnist-sample", strength_check=True)
    files = ["table2_vae.csv", "table2_vae.md", "dd_points_vae.csv", "strength_vae.csv", "table2_vae_metrics.json"]
    files += [f"{f}.{e}" for f in ("dd_curves_vae", "fig5_vae_output", "fig5_vae_latent") for e in ("png", "pdf")]
    for f in files:
        check_output(out / f)
    m = json.loads((out / "table2_vae_metrics.json").read_text())
    assert m["smoke"] is True and m["model"] == "vae" and len(m["pairs"]) == 2 and len(m["cs"]) == 5
    labels = load_dataset("mnist-sample", "test").labels.tolist()
    assert all(labels[o] != labels[t] for o, t in m["pairs"])
    assert set(m["auddc"]) == {"output", "latent"}
    for kind in m["auddc"].values():
        for r in kind.values():
            check_auddc(r, 2, 5)
    assert set(m["strength_check"]) == {"plain/output", "plain/latent"}
    for e in m["strength_check"].values():
        assert finite(e["max_drop"]) and e["too_weak"] == (e["max_drop"] > 0.02) and e["pairs"] == 2
    assert isinstance(m["attack_too_weak"], bool)
    md = (out / "table2_vae.md").read_text()
    assert "vae (no DBP)" in md and "vae (DBP)" in md and "±" in md
    for kind, c in m["claim"].items():               # the paper's claim, stated per row from the per-pair numbers
        a = m["auddc"][kind]
        assert c["raised"] == (a["dbp"]["mean"] > a["plain"]["mean"])
        assert math.isclose(c["paired_diff"], sum(d - p for d, p in zip(a["dbp"]["auddc"], a["plain"]["auddc"])) / 2, abs_tol=1e-9)
        assert f"{kind} attack: DBP {'raises' if c['raised'] else 'does NOT raise'}" in md


def test_attack_run_resumes_from_its_cache(tmp_path):
    "A pipeline run again into the same output folder reads back the attacks it finished (a killed run resumes) and writes the same table"
    out = run("04_vae_attack.ipynb", tmp_path, dataset="mnist-sample")
    kept = sorted(p.name for p in (out / ".attacks").glob("*.pt"))
    assert len(kept) == 4, kept                     # plain and DBP, output and latent attack
    table = lambda: [r.rsplit(",", 1)[0] for r in (out / "table2_vae.csv").read_text().splitlines()]   # every column but the last, the seconds
    first = table()
    run("04_vae_attack.ipynb", tmp_path, dataset="mnist-sample")
    cells = json.loads((tmp_path / "executed-04_vae_attack.ipynb").read_text())["cells"]
    log = "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []))   # nbformat keeps text as a string or a list of lines
    assert log.count("(read from the attack cache)") == 4, log[-2000:]
    assert table() == first and first[0].endswith(",n_gap_le0")
    assert sorted(p.name for p in (out / ".attacks").glob("*.pt")) == kept


def test_draw_attack_smoke(tmp_path):
    out = run("05_draw_attack.ipynb", tmp_path, dataset="mnist-sample", variants="draw-attn;draw:lstm=16")
    files = ["table2_draw.csv", "table2_draw.md", "dd_points_draw.csv", "table2_draw_metrics.json"]
    files += [f"{f}.{e}" for f in ("dd_curves_draw", "fig1", "fig5_draw_output", "fig5_draw_latent") for e in ("png", "pdf")]
    for f in files:
        check_output(out / f)
    m = json.loads((out / "table2_draw_metrics.json").read_text())
    assert m["smoke"] is True and m["strength_check"] is None and m["attack_too_weak"] is None
    assert list(m["variants"]) == ["draw-attn", "draw:lstm=16"]
    c = m["variants"]["draw:lstm=16"]["config"]
    assert c["attention"] is False and c["enc_size"] == c["dec_size"] == 16 and c["T"] == 2
    assert m["variants"]["draw-attn"]["config"]["attention"] is True
    for v in m["variants"].values():
        for kind in v["auddc"].values():
            for r in kind.values():
                check_auddc(r, 2, 5)
    labels = load_dataset("mnist-sample", "test").labels.tolist()
    o, t = m["fig1"]["pair"]
    assert (labels[o], labels[t]) == (1, 0)      # Fig. 1: a "1" attacked towards a "0"
    assert m["fig1"]["variant"] == "draw-attn" and set(m["fig1"]) >= {"plain", "dbp"}
    assert len((out / "table2_draw.csv").read_text().splitlines()) == 1 + 2 * 2 * 2
    assert set(m["claim"]) == set(m["variants"]) and all(set(c) == {"output", "latent"} for c in m["claim"].values())
    md = (out / "table2_draw.md").read_text()
    for label, v in m["variants"].items():
        for kind, c in m["claim"][label].items():
            assert c["raised"] == (v["auddc"][kind]["dbp"]["mean"] > v["auddc"][kind]["plain"]["mean"])
            assert f"{label}, {kind} attack: DBP {'raises' if c['raised'] else 'does NOT raise'}" in md


def test_draw_attack_celeba_smoke(tmp_path, data_dir):
    out = run("05_draw_attack.ipynb", tmp_path, dataset="celeba", data_dir=str(data_dir))
    for f in ("table2_draw.csv", "table2_draw.md", "fig1.png", "fig5_draw_output.png", "dd_curves_draw.png", "table2_draw_metrics.json"):
        check_output(out / f)
    m = json.loads((out / "table2_draw_metrics.json").read_text())
    assert m["dataset"] == "celeba" and len(m["variants"]) >= 2
    assert all(v["config"]["in_shape"] == [3, 64, 64] for v in m["variants"].values())
    for v in m["variants"].values():
        for kind in v["auddc"].values():
            for r in kind.values():
                check_auddc(r, 2, 5)
    assert m["fig1"]["pair"] == m["pairs"][0]    # CelebA: any two faces, the table's first pair


@pytest.mark.parametrize("name", ["02_vae_gradients.ipynb", "04_vae_attack.ipynb", "05_draw_attack.ipynb"])
def test_attack_pipelines_reject_unknown_dataset(tmp_path, name):
    with pytest.raises(pm.PapermillExecutionError, match="unknown dataset 'cifar10'; valid: mnist, mnist-sample, celeba"):
        run(name, tmp_path, dataset="cifar10")


def test_attack_pipelines_reject_unknown_options(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="unknown DRAW variant model 'gan'"):
        run("05_draw_attack.ipynb", tmp_path, dataset="mnist-sample", variants="draw-attn;gan:T=2")
    with pytest.raises(pm.PapermillExecutionError, match="unknown optimizer 'sgd'; valid: lbfgsb, scipy-lbfgsb, adam"):
        run("04_vae_attack.ipynb", tmp_path, dataset="mnist-sample", optimizer="sgd")
    with pytest.raises(pm.PapermillExecutionError, match="unknown optimizer 'lbfgs'; valid: lbfgsb, scipy-lbfgsb, adam"):
        run("02_vae_gradients.ipynb", tmp_path, dataset="mnist-sample", optimizer="lbfgs")  # one name everywhere


@pytest.mark.parametrize("name", ["01_reconstruction.ipynb", "02_vae_gradients.ipynb", "04_vae_attack.ipynb", "05_draw_attack.ipynb"])
def test_pipelines_reject_bad_threads(tmp_path, name):
    with pytest.raises(pm.PapermillExecutionError, match="threads must be an integer >= 1 or None, got 0"):
        run(name, tmp_path, dataset="mnist-sample", threads=0)
