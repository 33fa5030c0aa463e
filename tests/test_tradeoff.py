"""Beyond the paper (issue 16): the trade-off pipeline in smoke mode writes real, consistent outputs."""
import csv
import json
import math

import numpy as np

from pipeline_runner import run, check_output  # tests/ is on sys.path under pytest
from dbp_ae.tradeoff import pareto_front


def test_tradeoff_smoke(tmp_path):
    out = run("07_tradeoff.ipynb", tmp_path, dataset="mnist-sample")
    for f in ("tradeoff.csv", "tradeoff.md", "tradeoff_budget.md", "tradeoff_metrics.json", "tradeoff_frontier.png", "tradeoff_frontier.pdf",
              "tradeoff_gradient.png", "tradeoff_gradient.pdf"):
        check_output(out / f)
    m = json.loads((out / "tradeoff_metrics.json").read_text())
    assert m["smoke"] is True and m["dataset"] == "mnist-sample" and m["epochs"] == [1] and m["budgets"] == [0.05, 0.1]
    rows = {r["label"]: r for r in m["rows"]}
    assert set(rows) == {"plain 1ep", "dbp l1=l2=0.1 second-half 1ep", "dbp l1=l2=1 second-half 1ep", "noise 0.3 1ep"}, set(rows)
    assert rows["plain 1ep"]["rec_change"] == 0 and rows["plain 1ep"]["grad_x_ratio"] == 1
    for r in m["rows"]:
        assert len(r["auddc"]["output"]["auddc"]) == 2 == len(r["lip_values"]) and r["lip_method"] == "exact"
        assert 0 < min(r["lip_values"]) <= r["lip_mean"] <= r["lip_max"] == max(r["lip_values"])
        assert all(math.isfinite(r[k]) for k in ("rec_error", "grad_x", "fro_x", "spec_x", "auddc_output", "auddc_latent"))
    # the table shows the metrics file's numbers
    table = {t["label"]: t for t in csv.DictReader((out / "tradeoff.csv").open())}
    assert set(table) == set(rows)
    for lab, r in rows.items():
        for k in ("rec_error", "rec_change", "grad_x_ratio", "auddc_output", "auddc_latent", "lip_mean", "lip_max"):
            assert math.isclose(float(table[lab][k]), r[k], rel_tol=1e-5, abs_tol=1e-9), (lab, k, table[lab][k], r[k])
    # the budget table's choices meet their budget and are the most robust that do
    md = (out / "tradeoff_budget.md").read_text()
    for b in m["budget"]:
        for fam in ("dbp", "noise"):
            ch = rows[b[fam]]
            assert ch["family"] in (fam, "plain") and ch["rec_change"] <= b["budget"]
            ok = [r for r in m["rows"] if r["family"] in (fam, "plain") and r["rec_change"] <= b["budget"]]
            assert ch["auddc_output"] == max(r["auddc_output"] for r in ok)
            assert f"| {b[fam]} | {100 * ch['rec_change']:+.1f}% | {ch['auddc_output']:.3f} |" in md, (b[fam], md)
    assert "Verdicts (`dbp_ae.claims`" in md and "preview" in md                     # a smoke run: never evidence
    # the frontier points are non-dominated within their family, and every other point is dominated
    for fam in ("dbp", "noise"):
        fr = [r for r in m["rows"] if r["family"] in (fam, "plain")]
        keep = pareto_front([r["rec_change"] for r in fr], [r["auddc_output"] for r in fr])
        assert sorted(m["frontier"][fam]) == sorted(r["label"] for r, k in zip(fr, keep) if k)
        for a in m["frontier"][fam]:
            assert not any(r["rec_change"] <= rows[a]["rec_change"] and r["auddc_output"] >= rows[a]["auddc_output"]
                           and (r["rec_change"], r["auddc_output"]) != (rows[a]["rec_change"], rows[a]["auddc_output"]) for r in fr)
    # Table 2 at the lambda each budget affords: the largest lambda1 = lambda2 within the budget, against the plain model on the same pairs
    for a in m["afforded"]:
        fits = [r for r in m["rows"] if r["family"] == "dbp" and r["lambda1"] == r["lambda2"] and r["rec_change"] <= a["budget"]]
        if not fits:
            assert a["setting"] is None and f"| +{100 * a['budget']:g}% | none" in md; continue
        assert rows[a["setting"]]["lambda2"] == max(r["lambda2"] for r in fits)
        for k in ("output", "latent"):
            x = a["attacks"][k]
            assert x["plain_pairs"] == rows["plain 1ep"]["auddc"][k]["auddc"] and x["dbp_pairs"] == rows[a["setting"]]["auddc"][k]["auddc"]
            assert math.isclose(x["diff"]["mean"], np.nanmean(np.subtract(x["dbp_pairs"], x["plain_pairs"])))
    assert "Table 2 at the λ each budget affords" in md and "reconstruction budget affords, DBP raises the AUDDC" in md
    lip, au = [r["lip_mean"] for r in m["rows"]], [r["auddc_output"] for r in m["rows"]]
    from scipy import stats
    assert math.isclose(m["rank"]["rho"], stats.spearmanr(lip, au).statistic) and m["rank"]["n"] == 4


def test_tradeoff_rejects_bad_grid(tmp_path):
    import papermill as pm
    import pytest
    with pytest.raises(pm.PapermillExecutionError, match="unknown schedule 'linear'"):
        run("07_tradeoff.ipynb", tmp_path, dataset="mnist-sample", schedules="second-half,linear")
