"""Strength check by per-(pair, C) L-BFGS-B (one scipy call per problem, as Gondim-Ribeiro et al. run it) on the full-MNIST
Table 1 VAEs (plain and DBP, from the training cache), the first 10 pairs of 04_vae_attack (seed 0), 51 C, 3000 iterations.

Run: python benchmarks/strength_perrow_lbfgsb.py output|latent [OUT.json]; writes per-pair AUDDC and seconds."""
import sys, json, time, torch, numpy as np
from pathlib import Path; sys.path.insert(0, str(Path(__file__).resolve().parent)); import bench_attack as b
from dbp_ae.attacks import attack, sample_pairs, default_c_grid, AttackResult
from dbp_ae.evaluate import attack_auddc
from dbp_ae.data import load_dataset
test = load_dataset('mnist', 'test'); pairs = sample_pairs(test.labels.tolist(), 10, 0); cs = default_c_grid()
kind = sys.argv[1] if len(sys.argv) > 1 else 'output'
res = {}
for p in [1, 8, 0, 2, 3, 4, 5, 6, 7, 9]:
    o, t = pairs[p]; xo, xt = test[o][0][None], test[t][0][None]
    for dbp in (False, True):
        m, _ = b.table1_vae('mnist', dbp=dbp)
        t0 = time.time()
        xs = torch.stack([attack(m, xo, xt, kind, cs=cs[k:k+1], optimizer='scipy-lbfgsb', iterations=3000).x_adv[0, 0] for k in range(len(cs))])
        r = AttackResult(x_adv=xs[None], objective=torch.zeros(1, len(cs)), dist2=torch.zeros(1, len(cs)), term=torch.zeros(1, len(cs)),
                         cs=torch.as_tensor(cs), x_o=xo, x_t=xt, kind=kind, optimizer='scipy-lbfgsb')
        a = attack_auddc(m, r)
        res[f"{p}/{'dbp' if dbp else 'plain'}"] = dict(auddc=float(a['auddc'][0]), seconds=time.time() - t0)
        print(p, 'dbp' if dbp else 'plain', a['auddc'][0], time.time() - t0, flush=True)
        json.dump(res, open(sys.argv[2] if len(sys.argv) > 2 else f'perrow_lbfgsb_{kind}.json', 'w'), indent=1)
