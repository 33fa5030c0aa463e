"""REPORT.md and the README's results: rendered from the committed outputs in figures/, links that exist, a README that is current, and `--report-only` that runs nothing."""
import shutil
from pathlib import Path

import pytest

from dbp_ae import report
from dbp_ae.claims import judge_folder, MASKING, NOT_RENDERED, PARTLY, PREVIEW, REPRODUCED, NOT
from dbp_ae.cli import main

ROOT = Path(__file__).resolve().parents[1]
FIGURES, README = ROOT / "figures", ROOT / "README.md"


def test_report_links_exist():
    "Every relative link and image of figures/REPORT.md and of the README points at a file that is there"
    assert report.broken_links(FIGURES / "REPORT.md") == []
    assert report.broken_links(README) == []


def test_broken_link_is_caught(tmp_path):
    "A report whose image was deleted fails the link check (the check above can fail)"
    tree = tmp_path / "figures"
    shutil.copytree(FIGURES / "mnist", tree / "mnist")
    p = report.write_report(tree)
    assert report.broken_links(p) == []
    (tree / "mnist" / "fig3.png").unlink()
    assert report.broken_links(p) == ["mnist/fig3.png"]


def test_readme_results_current():
    "The README's 'Results at a glance' block is what the metrics in figures/ give now (regenerate: dbp-ae reproduce --report-only --out figures --readme README.md)"
    assert report.readme_current(FIGURES, README), "README results are stale: run dbp-ae reproduce --report-only --out figures --readme README.md"


def test_report_current():
    "figures/REPORT.md is what --report-only renders from figures/ now (the header's commit and the provenance lines aside)"
    keep = lambda t: [l for l in t.splitlines() if not l.startswith(("Rendered by", "*run `"))]
    assert keep((FIGURES / "REPORT.md").read_text()) == keep(report.render_report(FIGURES))


def test_committed_verdicts():
    "The verdicts of issue 14's cases on the committed outputs: per family, previews not evidence, a failed audit never a win"
    mnist = {(c.item, c.family): c for c in judge_folder(FIGURES / "mnist", "mnist")}
    assert mnist[("table2", "vae")].verdict == REPRODUCED
    assert mnist[("table3", "gmm-dbp")].verdict != REPRODUCED     # 96.68% vs the paper's 95.28%: the tolerance is two-sided
    sample = {(c.item, c.family): c for c in judge_folder(FIGURES / "mnist-sample", "mnist-sample")}
    assert sample[("table2", "vae")].verdict == PREVIEW and sample[("table2", "draw-attn")].would_be == "not reproduced"
    # the quick profile's margin-loss PGD passes its own audit, so the robustness claim is judged (a preview), not voided;
    # under that attack the GMM is not more robust than the MLP at every eps (both 0% at 0.3). A failed audit: 08c's tests.
    for other in ("mlp", "lenet"):
        t3 = sample[("table3", f"gmm-dbp vs {other}")]
        assert t3.verdict == PREVIEW and t3.would_be == "not reproduced" and t3.would_be != MASKING
    svhn = {(c.item, c.family): c for c in judge_folder(FIGURES / "svhn", "svhn")}
    assert svhn[("table3", "gmm-dbp")].would_be == "not reproduced" and "47.00%" in svhn[("table3", "gmm-dbp")].evidence
    tree = {(c.item, c.family, c.dataset): c.verdict for _, _, c in report.judge_tree(FIGURES)}
    # full-MNIST DRAW-attn and DRAW without attention (mnist/draw/) are rendered (10 pairs) and judged: DBP raises DRAW's
    # output AUDDC (significant without attention) and lowers its latent one; both strength checks pass
    assert tree[("table2", "draw-attn", "mnist")] == NOT and tree[("table2", "draw", "mnist")] == PARTLY
    nodraw = {(c.item, c.family): c for c in judge_folder(FIGURES / "mnist" / "draw", "mnist")}
    assert "latent: 0.519 -> 0.469" in nodraw[("table2", "draw")].evidence and nodraw[("table2", "draw")].verdict != MASKING
    celeba = {(c.item, c.family): c for c in judge_folder(FIGURES / "celeba", "celeba")}   # the conv VAE is CelebA's VAE
    assert celeba[("table2", "conv-vae")].verdict == REPRODUCED and ("table2", "vae", "celeba") not in tree
    # full-MNIST DRAW without attention, Table 1 rendered as a third part: the gradient falls 10.5x at +40% error
    assert mnist[("table1", "draw")].verdict == PARTLY and "(10.5x)" in mnist[("table1", "draw")].evidence
    assert mnist[("table1", "vae")].verdict == mnist[("table1", "draw-attn")].verdict == PARTLY     # the earlier parts kept
    # CelebA Table 1 rendered in two parts (conv VAE, then DRAW-attn): both rows judged; DRAW-attn's gradient falls 20x at +106% error
    assert celeba[("table1", "conv-vae")].verdict == NOT and celeba[("table1", "draw-attn")].verdict == PARTLY
    # ... and a third part, DRAW without attention: the gradient falls 33.7x at +62.9% error
    assert celeba[("table1", "draw")].verdict == PARTLY and "(33.7x)" in celeba[("table1", "draw")].evidence and "+62.9%" in celeba[("table1", "draw")].evidence
    # CelebA DRAW-attn, attacked with 2 random restarts per (pair, C) (a plain start alone was too weak on the plain model):
    # the strength check now passes (4 restarts, 3x iterations, scipy, Adam), so DBP lower on every pair is evidence
    t2 = celeba[("table2", "draw-attn")]
    # CelebA Fig. 2 (the conv VAE, the median pair of 10): the gradient falls 3.8x at +13.8% error, as in its Table 1 row
    fig2 = [c for c in judge_folder(FIGURES / "celeba", "celeba") if c.item == "fig2"]
    assert any(c.verdict == NOT and "(3.8x)" in c.evidence for c in fig2) and any(c.verdict == PREVIEW for c in fig2)
    assert t2.verdict == NOT and "output: 0.360 -> 0.212" in t2.evidence and "strength check: passed" in t2.evidence and "random starts" in (FIGURES / "celeba" / "table2_draw.md").read_text()
    # issue 16 on full MNIST (reduced grid): DBP beats the noise baseline at +5% and +10%, and Table 2's claim holds at the lambda each affords
    trade = {c.family: c.verdict for c in mnist.values() if c.item == "tradeoff"}
    assert trade["vae: dbp vs noise"] == REPRODUCED and trade["vae: λ by the +5% budget"] == trade["vae: λ by the +10% budget"] == REPRODUCED
    assert trade["vae: best DBP setting"] == NOT                     # the paper's 17.9x at +0.9% is not in the grid
    # sigma 0.02 and 0.03 fit the +5% budget (+2.2%, +3.2%) but lower the output AUDDC (0.237 < 0.255): the baseline's +5% pick stays the plain model
    vs = next(c for c in mnist.values() if c.item == "tradeoff" and c.family == "vae: dbp vs noise")
    assert "14 models" in vs.scale and "vs noise plain 20ep (+0.0%, AUDDC 0.255)" in vs.evidence
    # issue 16 item 6 on mnist-sample (a preview): for DRAW-attn the +10% budget affords lambda 0.03 (0.1 costs +10.5%);
    # the output AUDDC rises there, the latent one does not, so Table 2's claim would not be reproduced at that lambda either
    draw = {c.family: c for c in judge_folder(FIGURES / "mnist-sample" / "draw-attn-tradeoff", "mnist-sample") if c.item == "tradeoff"}
    b10 = draw["draw-attn: λ by the +10% budget"]
    assert b10.verdict == PREVIEW and b10.would_be == "not reproduced" and "l1=l2=0.03" in b10.evidence
    assert draw["draw-attn: dbp vs noise"].verdict == PREVIEW and draw["draw-attn: dbp vs noise"].would_be == "reproduced"
    # issue 16 items 2 (lambda1 = 0, schedules) on mnist-sample (a preview): DBP from the first step reaches the paper's point
    sched = {c.family: c for c in judge_folder(FIGURES / "mnist-sample" / "tradeoff-schedules", "mnist-sample") if c.item == "tradeoff"}
    best = sched["vae: best DBP setting"]
    assert best.verdict == PREVIEW and best.would_be == "reproduced" and "l1=l2=1 constant" in best.evidence
    # ... which full MNIST does not bear out: the constant schedule at 20 epochs costs +25.4% at lambda 1 (21.4x), and 40 epochs of
    # the paper's schedule cost the same error at every lambda as 20 (lambda 0.01: +0.8%, 3.7x); at 40 epochs +5% affords lambda 0.03
    # (+3.5%), +10% lambda 0.1 (+9.5%), and DBP raises both AUDDCs at each
    t = {c.family: c for c in judge_folder(FIGURES / "mnist" / "tradeoff-40ep", "mnist") if c.item == "tradeoff"}
    assert t["vae: best DBP setting"].verdict == NOT
    assert t["vae: λ by the +5% budget"].verdict == REPRODUCED and "l1=l2=0.03 second-half 40ep (+3.5%" in t["vae: λ by the +5% budget"].evidence
    assert t["vae: λ by the +10% budget"].verdict == REPRODUCED and "l1=l2=0.1 second-half 40ep (+9.5%" in t["vae: λ by the +10% budget"].evidence
    # with sigma 0.02 ... 0.5 at 40 epochs (14 models) the baseline has a pick: sigma 0.03 (+4.9%, output AUDDC 0.233) at both budgets, and
    # DBP beats it; the Lipschitz ranking holds over the 14 models too (rho -0.574, p 0.016)
    assert t["vae: dbp vs noise"].verdict == REPRODUCED and t["vae: dbp vs noise"].evidence.count("vs noise noise 0.03 40ep (+4.9%, AUDDC 0.233)") == 2
    assert t["vae: all models"].verdict == REPRODUCED and "rho -0.574" in t["vae: all models"].evidence and "14 models" in t["vae: all models"].scale
    # the constant schedule with lambda 0.01 ... 3: lambda 0.01 lowers the error (-0.35%) at a 2.9x smaller gradient; +5% affords
    # lambda 0.03 (+2.4%), +10% lambda 0.1 (+8.4%), and DBP raises both AUDDCs at each
    c = {c.family: c for c in judge_folder(FIGURES / "mnist" / "tradeoff-constant", "mnist") if c.item == "tradeoff"}
    assert c["vae: best DBP setting"].verdict == NOT and c["vae: dbp vs noise"].verdict == REPRODUCED
    assert c["vae: λ by the +5% budget"].verdict == REPRODUCED and "l1=l2=0.03 constant 20ep (+2.4%" in c["vae: λ by the +5% budget"].evidence
    assert c["vae: λ by the +10% budget"].verdict == REPRODUCED and "l1=l2=0.1 constant 20ep (+8.4%" in c["vae: λ by the +10% budget"].evidence
    # with lambda 3 added (+28.3%, 36x, output AUDDC 0.345) the Lipschitz figure ranks the 8 models as the output AUDDC does
    assert c["vae: all models"].verdict == REPRODUCED and "rho -0.714" in c["vae: all models"].evidence and "8 models" in c["vae: all models"].scale
    # the warmup schedule with lambda 0.01 ... 3, as the paper's schedule (lambda 0.1 +8.6% 6.2x, lambda 1 +25.9% 19.7x): +5% affords
    # lambda 0.03 (+2.6%) and +10% lambda 0.1, where DBP raises both AUDDCs; it beats the plain model at +5% (no sigma fits), sigma 0.1 at +10%
    w = {c.family: c for c in judge_folder(FIGURES / "mnist" / "tradeoff-warmup", "mnist") if c.item == "tradeoff"}
    assert w["vae: best DBP setting"].verdict == NOT and w["vae: dbp vs noise"].verdict == REPRODUCED
    assert w["vae: λ by the +5% budget"].verdict == REPRODUCED and "l1=l2=0.03 warmup 20ep (+2.6%" in w["vae: λ by the +5% budget"].evidence
    assert w["vae: λ by the +10% budget"].verdict == REPRODUCED and "l1=l2=0.1 warmup 20ep (+8.6%" in w["vae: λ by the +10% budget"].evidence
    # lambda1 = 0 on full MNIST (lambda2 0.01 ... 3): the same numbers as lambda1 = lambda2 (lambda2 0.1: +9.5%, 6.1x); DBP beats the
    # plain model at +5% (lambda2 0.03, no sigma fits) and sigma 0.1 at +10%; with no lambda1 = lambda2 run in the grid its lambda1 = 0
    # runs stand in for Table 2 at the afforded lambda: +5% affords lambda2 0.03 (+3.0%), +10% lambda2 0.1 (+9.5%), both AUDDCs rise at each
    # issue 16 item 6 on full MNIST: the +10% budget affords DRAW-attn lambda 0.03 (+5.8%; 0.1 costs +17.6%); the output AUDDC
    # rises, the latent one does not (partly); the grid has no noise model, so the baseline comparison is not rendered
    da = {c.family: c for c in judge_folder(FIGURES / "mnist" / "draw-attn-tradeoff", "mnist") if c.item == "tradeoff"}
    assert da["draw-attn: λ by the +10% budget"].verdict == PARTLY and "l1=l2=0.03 second-half 20ep (+5.8%" in da["draw-attn: λ by the +10% budget"].evidence
    assert "latent: 0.573 -> 0.563" in da["draw-attn: λ by the +10% budget"].evidence and da["draw-attn: dbp vs noise"].verdict == NOT_RENDERED
    z = {c.family: c for c in judge_folder(FIGURES / "mnist" / "tradeoff-lambda1-zero", "mnist") if c.item == "tradeoff"}
    assert z["vae: dbp vs noise"].verdict == REPRODUCED and "+5%: DBP dbp l1=0 l2=0.03 second-half 20ep (+3.0%" in z["vae: dbp vs noise"].evidence
    assert "+10%: DBP dbp l1=0 l2=0.1 second-half 20ep (+9.5%" in z["vae: dbp vs noise"].evidence
    for b in ("+5%", "+10%"):
        assert z[f"vae: λ by the {b} budget"].verdict == REPRODUCED
    assert z["vae: λ by the +5% budget"].evidence.startswith("dbp l1=0 l2=0.03 second-half 20ep (+3.0%") and "output: 0.255 -> 0.337" in z["vae: λ by the +5% budget"].evidence
    assert z["vae: λ by the +10% budget"].evidence.startswith("dbp l1=0 l2=0.1 second-half 20ep (+9.5%") and "latent: 0.338 -> 0.398" in z["vae: λ by the +10% budget"].evidence
    # lambda1 = 0 with the constant and warmup schedules completes the 20-epoch cube: the budgets pick lambda2 0.03 and 0.1 as with
    # lambda1 = lambda2, DBP raises both AUDDCs there and beats the noise baseline; the Lipschitz ranking holds on both grids
    for folder, sched, e5, e10, rho in (("tradeoff-lambda1-zero-constant", "constant", "+2.3%", "+8.8%", "rho -0.976"),
                                        ("tradeoff-lambda1-zero-warmup", "warmup", "+2.5%", "+8.2%", "rho -0.762")):
        g = {c.family: c for c in judge_folder(FIGURES / "mnist" / folder, "mnist") if c.item == "tradeoff"}
        assert g["vae: dbp vs noise"].verdict == REPRODUCED and g["vae: best DBP setting"].verdict == NOT
        assert g["vae: λ by the +5% budget"].verdict == REPRODUCED and g["vae: λ by the +5% budget"].evidence.startswith(f"dbp l1=0 l2=0.03 {sched} 20ep ({e5}")
        assert g["vae: λ by the +10% budget"].verdict == REPRODUCED and g["vae: λ by the +10% budget"].evidence.startswith(f"dbp l1=0 l2=0.1 {sched} 20ep ({e10}")
        assert g["vae: all models"].verdict == REPRODUCED and rho in g["vae: all models"].evidence and "8 models" in g["vae: all models"].scale
    # the constant and warmup schedules at 40 epochs: +5% affords lambda 0.03, +10% lambda 0.1 on both, where DBP raises both AUDDCs
    # and beats the baseline (its pick is the plain model: sigma 0.1 costs +16.6%); constant lambda 0.01 lowers the error (-1.8%)
    for folder, sched, e5, e10, lip in (("tradeoff-40ep-constant", "constant", "+1.9%", "+8.6%", NOT), ("tradeoff-40ep-warmup", "warmup", "+2.6%", "+8.3%", REPRODUCED)):
        g = {c.family: c for c in judge_folder(FIGURES / "mnist" / folder, "mnist") if c.item == "tradeoff"}
        assert g["vae: best DBP setting"].verdict == NOT and g["vae: all models"].verdict == lip
        assert g["vae: dbp vs noise"].verdict == REPRODUCED and g["vae: dbp vs noise"].evidence.count("vs noise plain 40ep (+0.0%, AUDDC 0.227)") == 2
        assert g["vae: λ by the +5% budget"].verdict == REPRODUCED and g["vae: λ by the +5% budget"].evidence.startswith(f"dbp l1=l2=0.03 {sched} 40ep ({e5}")
        assert g["vae: λ by the +10% budget"].verdict == REPRODUCED and g["vae: λ by the +10% budget"].evidence.startswith(f"dbp l1=l2=0.1 {sched} 40ep ({e10}")


def test_report_only_runs_nothing(tmp_path, capsys, monkeypatch):
    "--report-only re-judges a copy of figures/ without executing any notebook, and rewrites a README's block"
    import papermill
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("--report-only ran a notebook"))
    tree = tmp_path / "figures"
    shutil.copytree(FIGURES, tree, ignore=shutil.ignore_patterns("REPORT.md"))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{report.README_START}\nstale\n{report.README_END}\n")
    code = main(["reproduce", "--report-only", "--out", str(tree), "--readme", str(readme)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert (tree / "REPORT.md").exists() and not (tree / "runs").exists()
    assert "rewritten" in out.out and "stale" not in readme.read_text() and report.readme_current(tree, readme)
    assert main(["reproduce", "--report-only", "--out", str(tmp_path / "empty")]) == 2
    assert "no metrics files under" in capsys.readouterr().err
