"""The GMM and classifier-robustness pipelines (03, 06) run through papermill in smoke mode and write their outputs."""
import json

import papermill as pm
import pytest

from dbp_ae.data import load_dataset

from pipeline_runner import run, check_output  # tests/ is on sys.path under pytest


def prob(v):
    return isinstance(v, float) and 0 <= v <= 1


def test_gmm_transition_smoke(tmp_path):
    out = run("03_gmm_transition.ipynb", tmp_path, dataset="mnist-sample")
    for f in ("fig3.png", "fig3.pdf", "fig6.png", "fig6.pdf", "gmm.csv", "gmm.md", "gmm_metrics.json"):
        check_output(out / f)
    m = json.loads((out / "gmm_metrics.json").read_text())
    assert m["smoke"] is True and isinstance(m["settings"], str) and "lambda1=1.0" in m["settings"]
    assert set(m["accuracy"]) == {"plain", "dbp"} and all(prob(a) for a in m["accuracy"].values())
    assert m["accuracy"]["dbp"] > 0.2                     # far above chance (0.1) even for the 2-epoch smoke encoder
    assert m["n_test"] == 300
    f3 = m["fig3"]
    assert (f3["source_class"], f3["target_class"]) == (9, 7)
    assert load_dataset("mnist-sample", "test").labels[f3["test_index"]] == 9
    assert prob(f3["p_target_start"]) and prob(f3["p_target_end"]) and f3["p_target_end"] > f3["p_target_start"]
    assert len(f3["p_target_path"]) == 11 and f3["l2_moved"] > 0   # smoke: 10 steps
    assert set(m["fig6"]) == {"9>7", "4>9", "3>5", "1>0"}
    for g in m["fig6"].values():
        for r in ("plain", "dbp"):
            assert prob(g[r]["p_target_end"]) and 0 <= g[r]["judge_label_end"] <= 9
    md = (out / "gmm.md").read_text()
    assert md.startswith("GMM classifier accuracy: mnist-sample") and "encoder (DBP) + GMM" in md


def test_classifier_robustness_smoke(tmp_path):
    out = run("06_classifier_robustness.ipynb", tmp_path, dataset="mnist-sample", eps="0.1,0.3")
    for f in ("table3.csv", "table3.md", "table4.csv", "table4.md", "table34_metrics.json"):
        check_output(out / f)
    m = json.loads((out / "table34_metrics.json").read_text())
    assert m["smoke"] is True and isinstance(m["settings"], str) and m["eps"] == [0.1, 0.3] and m["n_eval"] == 40
    assert set(m["table3"]) == {"gmm-dbp", "mlp", "lenet"}
    for r in m["table3"].values():
        assert prob(r["clean"])
        for a in ("fgsm", "pgd", "autoattack"):
            assert set(r[a]) == {"0.1", "0.3"} and all(prob(v) for v in r[a].values())
            assert r[a]["0.3"] <= r["clean"] + 1e-9
    assert set(m["table4"]) == {"mlp", "lenet"}
    assert all(set(r) == {"0.1", "0.3"} and all(prob(v) for v in r.values()) for r in m["table4"].values())
    a = m["audit"]
    assert isinstance(a["passed"], bool) and isinstance(a["verdict"], str)
    assert a["passed"] == all(c["passed"] for c in a["checks"].values())
    # each check follows from the numbers it reports, and the pipeline's default attack passes its own audit
    tol = a["tolerances"]
    assert a["checks"]["falls_to_zero"]["passed"] == (a["large_eps"]["1"] <= tol["zero_tol"])
    pgd = m["table3"]["gmm-dbp"]["pgd"]
    assert a["checks"]["more_steps_no_gain"]["passed"] == all(pgd[e] - a["strong_pgd"][e] <= tol["tol"] for e in pgd)
    assert a["passed"], a["verdict"]
    assert a["large_eps"]["1"] == 0.0                       # at eps = 1 every image can be turned into any other
    assert set(a["checks"]) >= {"falls_to_zero", "black_le_white", "more_steps_no_gain", "autoattack_agrees"}
    md = (out / "table3.md").read_text()
    assert md.startswith("Table 3") and "Gradient-masking audit of gmm-dbp" in md and "autoattack 0.3" in md
    assert "| mlp" in (out / "table4.md").read_text()


def test_classifier_robustness_svhn_smoke(tmp_path, data_dir):
    out = run("06_classifier_robustness.ipynb", tmp_path, dataset="svhn", data_dir=str(data_dir), autoattack=False, audit=False)
    m = json.loads((out / "table34_metrics.json").read_text())
    assert set(m["table3"]) == {"gmm-dbp", "cvnet"} and m["audit"] is None
    assert [round(e * 255) for e in m["eps"]] == [2, 4, 8]
    assert m["models"]["gmm-dbp"]["encoder"] == "conv-vae" and m["models"]["gmm-dbp"]["encoder_config"]["in_shape"] == [3, 32, 32]
    assert "2/255" in (out / "table3.md").read_text()
    assert all(prob(v) for v in m["table4"]["cvnet"].values())


@pytest.mark.parametrize("name,valid", [("03_gmm_transition.ipynb", "valid: mnist, mnist-sample"),
                                        ("06_classifier_robustness.ipynb", "valid: mnist, mnist-sample, svhn")])
def test_gmm_pipelines_reject_unknown_dataset(tmp_path, name, valid):
    with pytest.raises(pm.PapermillExecutionError, match=f"unknown dataset 'cifar10'; {valid}"):
        run(name, tmp_path, dataset="cifar10")


def test_gmm_pipelines_reject_bad_options(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="unknown model 'resnet'; valid: gmm-dbp, mlp, lenet, cvnet"):
        run("06_classifier_robustness.ipynb", tmp_path, models="gmm-dbp,resnet")
    with pytest.raises(pm.PapermillExecutionError, match="cannot read eps 'x'"):
        run("06_classifier_robustness.ipynb", tmp_path, eps="0.1,x")
    with pytest.raises(pm.PapermillExecutionError, match="fig6_pairs must be digit pairs like .9>7,4>9., got .9>9.: two different digits"):
        run("03_gmm_transition.ipynb", tmp_path, fig6_pairs="9>9")
