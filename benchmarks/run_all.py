"""Run every benchmark and write benchmarks/RESULTS.md with the machine, the versions and the ratios.

Run: python benchmarks/run_all.py [--quick] [--reproduce-out reproduced] [--no-pipelines] [--device cpu] [--threads 1] [--clock cpu]

1. `bench_dbp_step.py`: time and memory of a DBP training step against a plain one, per estimator and model (MLP VAE,
   DRAW, DRAW with attention), and one epoch of ours against pythae's VAE / RAE_GP.
2. `bench_attack.py` (when present): the batched latent/output attack against a loop of single problems, equal AUDDC
   checked, and the time of a full Table 2 row (AUDDC of 20 pairs x 51 C).
3. The wall time of each pipeline in the quick profile of `dbp-ae reproduce`, read from the stamps of a reproduce run
   in `--reproduce-out` (default `reproduced/`, the command's default output); when there is none, the quick profile is
   run there first (about 15 minutes on 2 cores) unless `--no-pipelines`.

Each benchmark runs in its own process (by path, as a user would); one that is missing or fails is reported as such
in RESULTS.md and the others still run. Timings on a shared machine are pessimistic: the CPU load is recorded.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
HISTORY = "## History"   # the last section of RESULTS.md: dated measurements moved out of the notebooks, kept across runs


def run_bench(script, args, timeout):
    "Run `benchmarks/<script>` with `args` and `--json`; (status, seconds, stdout, parsed JSON or None)"
    path = HERE / script
    if not path.exists():
        return "missing", 0.0, f"{path} not found: this checkout has no such benchmark yet", None
    with tempfile.TemporaryDirectory() as t:
        js = Path(t) / "out.json"
        t0 = time.time()
        try:
            r = subprocess.run([sys.executable, str(path), *args, "--json", str(js)], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return "timed out", time.time() - t0, f"timed out after {timeout} s\n{e.stdout or ''}", None
        out = r.stdout + (f"\n[stderr]\n{r.stderr[-3000:]}" if r.returncode else "")
        data = json.loads(js.read_text()) if js.exists() else None
        return ("ok" if r.returncode == 0 else f"failed (exit {r.returncode})"), time.time() - t0, out, data


def pipeline_times(reproduce_out, run_missing, device):
    "Per quick-profile task: its stamp (wall and CPU seconds, models trained) and whether it matches the profile's settings"
    from dbp_ae.reproduce import PIPELINES, is_done, pipelines_dir, plan, read_stamp
    tasks = plan("quick", out_dir=reproduce_out, device=device)
    folder = pipelines_dir()
    have = [t for t in tasks if (folder / f"{t.pipeline}.ipynb").exists()]
    note = ""
    if run_missing and not all(read_stamp(t) for t in have):
        cmd = [sys.executable, "-c", "import sys; from dbp_ae.cli import main; sys.exit(main())", "reproduce", "--profile", "quick",
               "--out", str(reproduce_out), "--quiet"] + (["--device", device] if device else [])
        print("no complete quick-profile run in", reproduce_out, "- running:", " ".join(cmd[3:]), flush=True)
        r = subprocess.run(cmd, capture_output=True, text=True)
        note = f"ran `dbp-ae reproduce --profile quick --out {reproduce_out}` now (exit {r.returncode})"
    rows = []
    for t in tasks:
        nb = folder / f"{t.pipeline}.ipynb"
        s = read_stamp(t)
        rows.append(dict(task=t.name, items=", ".join(PIPELINES[t.pipeline]["items"]), present=nb.exists(),
                         same_settings=bool(s) and nb.exists() and is_done(t, nb), stamp=s))
    return rows, note or f"read from the stamps in {reproduce_out}"


def load_average():
    try:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short benchmark runs (fewer rounds and iterations)")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: the best present)")
    ap.add_argument("--reproduce-out", default="reproduced", help="output folder of a `dbp-ae reproduce --profile quick` run")
    ap.add_argument("--no-pipelines", action="store_true", help="do not run the quick profile when no run is found")
    ap.add_argument("--skip", default="", help="comma-separated benchmarks not to run: step, attack (reported as skipped)")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))   # its section from HISTORY on is kept
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads of the step benchmark (1 is the stable choice on a shared CPU)")
    ap.add_argument("--clock", default=None, choices=["wall", "cpu"], help="clock of the step benchmark (cpu: the process's CPU time)")
    a = ap.parse_args(argv)
    from dbp_ae.reproduce import device_info, fmt_s, versions

    dev = ["--device", a.device] if a.device else []
    started, load0 = datetime.now(timezone.utc), load_average()
    benches = {
        "DBP step (bench_dbp_step.py)": ("step", "bench_dbp_step.py", (["--rounds", "3", "--steps", "3"] if a.quick else []) + dev
                                         + (["--threads", str(a.threads)] if a.threads else []) + (["--clock", a.clock] if a.clock else []), 3600),
        "Batched attack and AUDDC row (bench_attack.py)": ("attack", "bench_attack.py", (["--quick"] if a.quick else []) + dev, 3600),
    }
    skip = {x.strip() for x in a.skip.split(",") if x.strip()}
    bad = skip - {b[0] for b in benches.values()}
    if bad:
        ap.error(f"unknown benchmark(s) in --skip: {', '.join(sorted(bad))}; valid: step, attack")
    res = {}
    for name, (key, script, args, timeout) in benches.items():
        if key in skip:
            res[name] = ("skipped (--skip)", 0.0, "not run: --skip " + key, None)
            continue
        print(f"running {script} {' '.join(args)}", flush=True)
        res[name] = run_bench(script, args, timeout)
        print(f"  {res[name][0]} in {res[name][1]:.0f} s", flush=True)
    rows, how = pipeline_times(Path(a.reproduce_out).resolve(), not a.no_pipelines, a.device)

    L = ["# Benchmark results", "",
         f"Written by `python benchmarks/run_all.py{' --quick' if a.quick else ''}` on {started:%Y-%m-%d %H:%M UTC}.", "",
         "## Machine", "", f"- device: {device_info(a.device)}", f"- {platform.platform()}",
         f"- load average at start / end: {load0} / {load_average()} (a load above the core count means the CPU was shared: "
         "times are pessimistic; ratios measured interleaved are less affected)",
         "- versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()), ""]
    step = res["DBP step (bench_dbp_step.py)"]
    L += ["## DBP training step: time and memory against a plain step", ""]
    if step[3]:
        d = step[3]
        L += ["Median over interleaved rounds, batch 128. `x plain`: the DBP step's time over the plain step's. `sum` is the training "
              "path (both terms in one batched backward pass), `sum-per-term` the reference path (one pass per term).", "",
              "| model / step | ms per step | x plain | MiB |", "| --- | ---: | ---: | ---: |"]
        L += [f"| {k} | {d['step_ms'][k]:.1f} | {d['ratio'][k]:.2f} | {d['peak_mib'][k]:.1f} |" for k in d["step_ms"]]
        if d.get("epoch_s"):
            L += ["", "One epoch of mnist-sample (4,000 images, batch 128), the same MLP:", "", "| implementation | s per epoch |", "| --- | ---: |"]
            L += [f"| {k} | {v:.2f} |" for k, v in d["epoch_s"].items()]
        if d.get("verdicts"):  # the benchmark's own verdicts (faster/slower, PASS/MISS against issue 12's targets)
            L += ["", "Verdicts" + (f" ({', '.join(f'{k} {v}' for k, v in d['settings'].items())})" if d.get("settings") else "") + ":", ""]
            L += [f"- {v}" for v in d["verdicts"]]
    L += ["", f"Status: {step[0]} ({step[1]:.0f} s).", "", "```", step[2].strip()[-4000:], "```", ""]
    att = res["Batched attack and AUDDC row (bench_attack.py)"]
    L += ["## Batched attack against a loop of single problems; time of a Table 2 row", "", f"Status: {att[0]} ({att[1]:.0f} s)."]
    if att[3]:
        L += ["", "| quantity | value |", "| --- | --- |"]
        L += [f"| {k} | {v if not isinstance(v, float) else f'{v:.4g}'} |" for k, v in att[3].items() if not isinstance(v, (dict, list))]
    L += ["", "```", att[2].strip()[-4000:], "```", ""]
    L += ["## Pipelines in the quick profile (`dbp-ae reproduce`)", "", f"Wall times {how}. CPU: the notebook kernel's CPU seconds.", "",
          "| task | items | wall | CPU | models trained | note |", "| --- | --- | ---: | ---: | ---: | --- |"]
    total = cpu = 0.0
    for r in rows:
        s = r["stamp"]
        if not r["present"]:
            L.append(f"| {r['task']} | {r['items']} | - | - | - | pipeline notebook not in this checkout |")
        elif not s:
            L.append(f"| {r['task']} | {r['items']} | - | - | - | not rendered (see REPORT.md of the run) |")
        else:
            total += s["seconds"]
            cpu += s.get("cpu_seconds") or 0.0
            L.append(f"| {r['task']} | {r['items']} | {fmt_s(s['seconds'])} | {fmt_s(s.get('cpu_seconds', float('nan')))} | "
                     f"{len(s.get('models_trained', []))} | {'' if r['same_settings'] else 'stamp from other settings or code: rerun the quick profile'} |")
    L += ["", f"Total of the pipelines found: {fmt_s(total)} wall, {fmt_s(cpu)} CPU; the quick profile's budget is 15 min on 2 cores "
          f"(wall / budget = {total / 900:.2f}). A pipeline whose models "
          "came from the cache (0 trained) was faster than on a fresh machine.", ""]
    old = Path(a.out).read_text() if Path(a.out).exists() else ""
    if HISTORY in old: L += ["", old[old.index(HISTORY):].rstrip()]   # measurements of earlier runs, kept as they were written
    Path(a.out).write_text("\n".join(L) + "\n")
    print("wrote", a.out)
    return 0 if all(r[0] in ("ok", "missing", "skipped (--skip)") for r in res.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
