"""The observation noise BoTorch's stock GP infers for the tabular benchmark's accuracy vs the table's seed-to-seed sd.

Usage: python benchmarks/gp_noise.py   (a few seconds; benchmarks/README.md "Near-duplicates")
"""
# What observation noise does the stock (inferred-noise) GP settle on for the table's accuracy?
from pathlib import Path
import sys, warnings, numpy as np, torch
warnings.filterwarnings("ignore"); torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sampler_quality import Table, SPACE, TABLE, seed_sd
from autopeft.search.prepare import prepare_search
from autopeft.space import load_space
from optuna._transform import _SearchSpaceTransform
from autopeft.search.sampling.acquisition import QLogNEHVICandidates
from botorch.utils.transforms import normalize
enc = prepare_search(load_space(str(SPACE)), with_data=False).encoding
table = Table(TABLE, enc)
tr = _SearchSpaceTransform(enc.distributions)
print("table seed sd", round(seed_sd(table), 4), "rows", len(table.keys))
for n in (12, 20, 40):
    out = []
    for seed in range(5):
        idx = np.random.default_rng(seed).choice(len(table.keys), n, replace=False)
        x = torch.tensor(np.stack([tr.transform(table.params[i]) for i in idx]))
        y = torch.tensor(np.column_stack([table.values[idx, 0], -np.log10(table.values[idx, 1])]))
        b = torch.tensor(tr.bounds.T)
        m = QLogNEHVICandidates()._model(normalize(x, b), y)
        sd = (m.likelihood.noise.detach().squeeze() ** 0.5) * m.outcome_transform.stdvs.squeeze()
        out.append(float(sd[0]))
    print(f"n={n}: inferred accuracy noise sd per seed", [round(v, 4) for v in out])
