"""Build (and execute) the notebooks in ``notebooks/`` from the cell sources below.

Usage: ``python tools/make_notebooks.py [--no-execute] [--only=NAME]`` (``--only=05``: the
notebooks whose file name contains ``05``).  The notebooks are stored with
their (small) outputs; ``tests/test_notebooks.py`` re-runs them from a fresh kernel.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "notebooks"

SETUP = """import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import mm4lmm_jax as mj

pd.set_option("display.width", 110)
plt.rcParams.update({"figure.dpi": 60, "figure.figsize": (6, 3)})"""

VARIANCE_COMPONENTS = [
    (
        "md",
        """# 1. Variance components: MM4LMM's VarianceComponentExample

Hybrid maize: 432 hybrids from Flint x Dent crosses, evaluated in two trials. The trait
is modelled with three variance components -- the Flint parent's genetic effect (kinship
of 122 Flint lines), the Dent parent's (116 Dent lines) and the error -- and the trial as
a fixed cofactor:

    y = X beta + Z_F u_F + Z_D u_D + e,   u_F ~ N(0, s2_F K_F),  u_D ~ N(0, s2_D K_D),  e ~ N(0, s2_E I)

This is MM4LMM's Example 1, done with `mm4lmm_jax`.""",
    ),
    ("code", SETUP),
    (
        "code",
        """v = mj.datasets.load_variance_component_example()
n = len(v.data)
var_list = {"Flint": v.kinship_flint, "Dent": v.kinship_dent, "Error": np.eye(n)}
z_list = {"Flint": v.z_flint, "Dent": v.z_dent, "Error": np.eye(n)}
v.data.head()""",
    ),
    ("md", "## Fit by matrix (MM4LMM's `Cofactor = matrix(Trial)`) and by formula"),
    (
        "code",
        """crit = dict(crit_var=1e-8, crit_loglik=1e-8, max_iter=2000, verbose=False)
by_matrix = mj.mmest(v.data["Trait"], cofactor=v.data[["Trial"]].to_numpy(), var_list=var_list, z_list=z_list, **crit)
by_formula = mj.mmest(v.data["Trait"], cofactor=v.data[["Trial"]], formula="~ Trial",
                      var_list=var_list, z_list=z_list, **crit)
print(by_matrix, by_matrix.path)
pd.DataFrame({"by matrix": by_matrix[0].sigma2, "by formula": by_formula[0].sigma2})""",
    ),
    ("code", "print(by_formula[0].summary())"),
    ("md", "## Standard errors of the variance components: expected and average information"),
    (
        "code",
        """expected = mj.mmvcov(by_formula, information="expected")
ai = mj.mmvcov(by_formula, information="ai")
pd.DataFrame({"sigma2": by_formula[0].sigma2, "SE (expected)": expected.se, "SE (AI)": ai.se})""",
    ),
    ("markdown_note", ""),
    (
        "md",
        """MM4LMM 3.0.3's expected information uses `1/2 tr((V_i P)'(V_i P))` on the diagonal;
with three components that differs from the textbook `1/2 tr(P V_i P V_i)` used here.
`convention="mm4lmm"` reproduces MM4LMM's numbers:""",
    ),
    ("code", """mj.mmvcov(by_formula, convention="mm4lmm").se"""),
    ("md", "## Tests of the fixed effects: Wald (Type III) and Kenward-Roger"),
    (
        "code",
        """wald = mj.anova_test(by_formula, type="TypeIII")[0]
kr = mj.anova_test(by_formula, type="KR")[0]
pd.concat({"Wald (Type III)": wald, "Kenward-Roger": kr}, axis=1)""",
    ),
    ("md", "## BLUPs of the parental lines"),
    (
        "code",
        """blup = mj.mmblup(fit=by_formula)
{k: b.head(3).round(3).to_dict() for k, b in blup.items()}""",
    ),
    (
        "code",
        """fig, axes = plt.subplots(1, 2, sharey=True)
for ax, name in zip(axes, ["Flint", "Dent"]):
    b = blup[name].sort_values()
    ax.plot(np.arange(b.size), b.to_numpy(), ".", ms=3)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_title(f"{name} lines (BLUP)")
    ax.set_xlabel("rank")
axes[0].set_ylabel("predicted effect")
fig.tight_layout()""",
    ),
]

QTL_DETECTION = [
    (
        "md",
        """# 2. QTL detection: MM4LMM's QTLDetectionExample

259 individuals, an additive kinship, and 10 markers tested one at a time: for every marker
the variance components are re-estimated (MM4LMM's `MMEst(X = Geno)`), then Wald tests,
a contrast and Kenward-Roger F tests.""",
    ),
    ("code", SETUP),
    (
        "code",
        """q = mj.datasets.load_qtl_detection_example()
n = q.pheno.size
var_list = {"Additive": q.kinship, "Error": np.eye(n)}
scan = mj.mmest(q.pheno, x=q.geno, var_list=var_list, crit_var=1e-8, crit_loglik=1e-8, max_iter=5000, verbose=False)
scan.to_frame()[["sigma2[Additive]", "sigma2[Error]", "beta[Xeffect]", "se[Xeffect]", "n_iter"]]""",
    ),
    ("md", "## Type I and Type III Wald tests (one table per marker model)"),
    (
        "code",
        """type1 = mj.anova_test(scan, type="TypeI")
type3 = mj.anova_test(scan, type="TypeIII")
pd.concat({"Type I": type1["SNP1"], "Type III": type3["SNP1"]}, axis=1)""",
    ),
    ("md", "## A contrast: the marker effect alone, and its Kenward-Roger version"),
    (
        "code",
        """contrast = np.array([[0.0, 1.0]])
wald = mj.anova_test(scan, {"marker": contrast})
kr = mj.anova_test(scan, {"marker": contrast}, type="KR")
table = pd.DataFrame({
    "Wald": wald.column("Wald")["marker"], "p (Wald)": wald.column("pval")["marker"],
    "F (KR)": kr.column("F")["marker"], "ddf (KR)": kr.column("ddf")["marker"], "p (KR)": kr.column("pval")["marker"],
})
table""",
    ),
    ("md", "## −log10 p along the markers"),
    (
        "code",
        """fig, ax = plt.subplots()
pos = np.arange(1, len(table) + 1)
ax.plot(pos, -np.log10(table["p (Wald)"]), "o-", label="Wald")
ax.plot(pos, -np.log10(table["p (KR)"]), "s--", label="Kenward-Roger")
ax.axhline(-np.log10(0.05 / len(table)), color="red", lw=0.8, label="Bonferroni 5%")
ax.set_xticks(pos, table.index, rotation=45)
ax.set_ylabel("-log10 p")
ax.legend()
fig.tight_layout()""",
    ),
    ("md", "## Likelihood-ratio tests (ML fits) for comparison"),
    (
        "code",
        """null_ml = mj.mmest(q.pheno, var_list=var_list, method="ml", verbose=False)
scan_ml = mj.mmest(q.pheno, x=q.geno, var_list=var_list, method="ml", verbose=False)
mj.likelihood_ratio_test(null_ml, scan_ml)[["stat", "df", "pval"]].T.round(4)""",
    ),
]

JAX_PIPELINE = [
    (
        "md",
        """# 4. The core inside a JAX program

`mm4lmm_jax.core` is pure JAX: likelihoods are differentiable in the variance components,
whole fits jit-compile and vmap.  Here: `jax.grad` of the ReML log-likelihood, a `vmap`
over many phenotypes, `jit` of a whole fit, and the likelihood inside a larger
differentiable computation (learning how to weight two kinships).""",
    ),
    (
        "code",
        """import jax
import jax.numpy as jnp

from mm4lmm_jax import core
"""
        + SETUP,
    ),
    (
        "code",
        """q = mj.datasets.load_qtl_detection_example()
y = jnp.asarray(q.pheno.to_numpy())
n = y.size
K = jnp.asarray(q.kinship.to_numpy())
X = jnp.ones((n, 1))
covs = jnp.stack([K, jnp.eye(n)])""",
    ),
    ("md", "## `jax.grad` of the ReML log-likelihood, checked by finite differences"),
    (
        "code",
        """sigma2 = jnp.array([1.0, 0.8])
grad = jax.grad(core.loglik_dense)(sigma2, y, X, covs, "reml")
h = 1e-6
fd = [(core.loglik_dense(sigma2.at[k].add(h), y, X, covs, "reml")
       - core.loglik_dense(sigma2.at[k].add(-h), y, X, covs, "reml")) / (2 * h) for k in range(2)]
print("autodiff:", np.asarray(grad), " finite differences:", np.asarray(fd))""",
    ),
    ("md", "## `jit` of a whole fit, and `vmap` over 200 simulated phenotypes"),
    (
        "code",
        """rot = core.joint_diagonalise(K)
x_rot = rot.t @ X

@jax.jit
def fit_one(y_sim):
    out = core.fit_rotated(rot.t @ y_sim, x_rot, rot.d, jnp.array([0.5, 0.5]),
                           method="reml", crit_var=1e-8, crit_loglik=1e-8, max_iter=500)
    return out.sigma2

L = jnp.linalg.cholesky(0.6 * K + 0.4 * jnp.eye(n) + 1e-9 * jnp.eye(n))
sims = (L @ jax.random.normal(jax.random.PRNGKey(0), (n, 200))).T  # true h2 = 0.6
est = jax.jit(jax.vmap(fit_one))(sims)
h2 = est[:, 0] / est.sum(axis=1)
print(f"h2 estimates over 200 phenotypes: mean {float(h2.mean()):.3f}, sd {float(h2.std()):.3f}  (truth 0.6)")
est_real = fit_one(y)
print("one real fit:", np.asarray(est_real))""",
    ),
    (
        "code",
        """fig, ax = plt.subplots()
ax.hist(np.asarray(h2), bins=25)
ax.axvline(0.6, color="red")
ax.set_xlabel("ReML h2 estimate")
ax.set_ylabel("simulations")
fig.tight_layout()""",
    ),
    (
        "md",
        """## A larger differentiable computation: learning a kinship weighting

Two candidate kinships -- the real one and one built from 1,000 unrelated random markers --
and the covariance `s_g (w K1 + (1 - w) K2) + s_e I`.  We maximise the ReML
log-likelihood jointly in `(w, s_g, s_e)` by gradient ascent (a few lines of Adam) through
`loglik_dense`; the parametrisation `w = sigmoid(t)`, `s = exp(.)` keeps the constraints.
The weight should go to the real kinship.""",
    ),
    (
        "code",
        """g = jax.random.bernoulli(jax.random.PRNGKey(1), 0.3, (n, 1000)).astype(float)
g = (g - g.mean(0)) / g.std(0)
K2 = g @ g.T / 1000

def neg_reml(theta):
    w = jax.nn.sigmoid(theta[0])
    s = jnp.exp(theta[1:])
    kin = w * K + (1 - w) * K2
    return -core.loglik_dense(s, y, X, jnp.stack([kin, jnp.eye(n)]), "reml")

step = jax.jit(jax.value_and_grad(neg_reml))
theta, m, v = jnp.zeros(3), jnp.zeros(3), jnp.zeros(3)
for it in range(1, 201):  # Adam
    val, grad = step(theta)
    m, v = 0.9 * m + 0.1 * grad, 0.999 * v + 0.001 * grad**2
    theta = theta - 0.05 * (m / (1 - 0.9**it)) / (jnp.sqrt(v / (1 - 0.999**it)) + 1e-8)
w = float(jax.nn.sigmoid(theta[0]))
print(f"learned weight on the real kinship: w = {w:.3f}; variances {np.asarray(jnp.exp(theta[1:])).round(3)}")
print(f"ReML log-likelihood {-float(val):.3f} (real kinship alone: "
      f"{float(core.loglik_dense(jnp.asarray(est_real), y, X, covs, 'reml')):.3f})")""",
    ),
]


GWAS_SCAN = [
    (
        "md",
        """# 3. A GWAS scan: `gwas()` on PLINK files, LOCO, Manhattan and QQ plots, GEMMA

The bundled example (`mj.datasets.gwas_example()`) is a simulated PLINK data set: 300
related individuals (families), 400 markers on two chromosomes (1% of genotypes missing),
two traits and two covariates. For every marker, `gwas()` fits by ReML

    y = intercept + age + sex + g b + u + e,   u ~ N(0, s2_g K),  e ~ N(0, s2_e I)

re-estimating the variance components for each marker (as GEMMA `-lmm 1` and MM4LMM's
`MMEst(X=...)` do) and tests `b = 0`. Larger data sets: `mj.datasets.simulate_plink(...)`.""",
    ),
    (
        "code",
        """import shutil
import subprocess
import tempfile
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import mm4lmm_jax as mj
from mm4lmm_jax.plots import manhattan, qq

warnings.simplefilter("ignore", mj.MissingDataWarning)  # gwas() also reports drops in res.attrs
pd.set_option("display.width", 110)
plt.rcParams.update({"figure.dpi": 60, "figure.figsize": (6, 3)})""",
    ),
    (
        "code",
        """ex = mj.datasets.gwas_example()
pd.read_csv(ex.pheno, sep="\\t").head()""",
    ),
    ("md", "## Scan with leave-one-chromosome-out kinships (standardised GRM from the other chromosome)"),
    (
        "code",
        """res = mj.gwas(ex.pheno, ex.prefix, covariates=ex.covar, pheno_names=["trait1"], loco=True, progress=False)
print({k: res.attrs[k] for k in ("n_analysed", "n_dropped_missing", "covariates", "loco", "lambda_gc")})
res.nsmallest(5, "p_wald")""",
    ),
    (
        "code",
        """fig, axes = plt.subplots(1, 2, figsize=(10, 3), gridspec_kw={"width_ratios": [2.5, 1]})
manhattan(res, ax=axes[0], title="trait1, LOCO")
qq(res, ax=axes[1])
fig.tight_layout()""",
    ),
    (
        "md",
        """The genomic inflation `lambda = median(Wald) / 0.455` is in the QQ plot's legend and in
`res.attrs["lambda_gc"]`. Per-chromosome null models (variance components, h2) are in
`res.attrs["null_models"]`. In this toy data set each LOCO kinship is built from the 200
markers of the other chromosome only, which captures the families' relatedness poorly:
hence lambda above 1. With the GRM of all markers the test statistics are calibrated:""",
    ),
    (
        "code",
        """full = mj.gwas(ex.pheno, ex.prefix, covariates=ex.covar, pheno_names=["trait1"], progress=False)
print("lambda, GRM of all markers:", round(full.attrs["lambda_gc"]["trait1"], 3))""",
    ),
    ("code", """pd.DataFrame(res.attrs["null_models"]["trait1"]).T"""),
    ("md", "## Several traits share one rotation: one call"),
    (
        "code",
        """both = mj.gwas(ex.pheno, ex.prefix, covariates=ex.covar, loco=True, progress=False)
both.groupby("trait")[["p_wald"]].min().assign(lambda_gc=pd.Series(both.attrs["lambda_gc"]))""",
    ),
    (
        "md",
        """## Against GEMMA (when installed: `apt-get install gemma`)

GEMMA needs the same kinship: we let it compute its centred relatedness matrix (`-gk 1`),
scan with it (`-lmm 1`, covariates with an explicit intercept column, `-maf 0 -miss 1 -r2 1`
so that it keeps every marker) and give the same matrix to `gwas()`.""",
    ),
    (
        "code",
        """if shutil.which("gemma") is None:
    print("gemma is not installed: skipping the comparison")
else:
    work = tempfile.mkdtemp()
    covar = pd.read_csv(ex.covar, sep="\\t")
    np.savetxt(f"{work}/c.txt", np.column_stack([np.ones(len(covar)), covar.age, covar.sex]))
    common = ["-bfile", ex.prefix, "-maf", "0", "-miss", "1", "-r2", "1", "-outdir", work]
    subprocess.run(["gemma", *common, "-gk", "1", "-o", "k"], check=True, capture_output=True)
    subprocess.run(["gemma", *common, "-k", f"{work}/k.cXX.txt", "-c", f"{work}/c.txt", "-lmm", "1", "-o", "a"],
                   check=True, capture_output=True)
    gem = pd.read_csv(f"{work}/a.assoc.txt", sep="\\t")
    ours = mj.gwas(ex.pheno, ex.prefix, kinship=f"{work}/k.cXX.txt", covariates=ex.covar, pheno_names=["trait1"],
                   progress=False, rotation_dtype="float64")
    dlog = np.abs(np.log10(ours.p_wald) - np.log10(gem.p_wald))
    dbeta = np.abs(ours.beta - gem.beta) / gem.se
    print(f"max |delta log10 p| = {dlog.max():.2e}, max |delta beta| / se = {dbeta.max():.2e}")
    fig, ax = plt.subplots(figsize=(3.5, 3.5))
    ax.scatter(-np.log10(gem.p_wald), -np.log10(ours.p_wald), s=5)
    ax.set_xlabel("GEMMA -log10 p")
    ax.set_ylabel("mm4lmm_jax -log10 p")""",
    ),
    (
        "md",
        """## At scale

* `chunk_size` markers are read, imputed, rotated and fitted per block: memory is bounded by
  the block, not by the number of markers.
* The rotation `U'g` runs in float32 by default (twice the speed; p-values within 1e-4 in
  log10 of float64); `rotation_dtype="float64"` for the exact rotation.
* Blocks are split over all local JAX devices (several GPUs, or host devices); with
  `client=dask.distributed.Client(...)` each block is a task on a Dask cluster. Both give the
  same numbers as the single-process scan (tests/test_gwas.py).
* Command line: `mm4lmm gwas --bfile PREFIX --pheno FILE --covar FILE --loco --out PREFIX`.""",
    ),
]


DIFFERENTIABLE_FITS = [
    (
        "md",
        """# 5. Differentiable fits: `jax.grad` through the optimum

`core.fit` runs MM4LMM's iterations forward and differentiates the *optimum* by the implicit
function theorem (one small linear solve with the Hessian of the likelihood), so `jax.grad`,
`jax.jacrev`, `jit` and `vmap` go through a whole fit: through the variance components and
everything computed from them (coefficients, log-likelihood, Wald p-values, BLUPs).
Two uses on the bundled QTLDetectionExample (259 individuals): the influence of each
individual on h², and learning the weighting of two kinships by a held-out criterion
(a bilevel problem). Each is checked against refits.""",
    ),
    (
        "code",
        """import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import mm4lmm_jax as mj
from mm4lmm_jax import core

jax.config.update("jax_enable_x64", True)
pd.set_option("display.width", 110)
plt.rcParams.update({"figure.dpi": 60, "figure.figsize": (6, 3)})

q = mj.datasets.load_qtl_detection_example()
y = jnp.asarray(q.pheno.to_numpy())
n = y.size
K = jnp.asarray(q.kinship.to_numpy())
X = jnp.ones((n, 1))
fit = core.fit(y, X, jnp.stack([K, jnp.eye(n)]))
h2 = float(fit.sigma2[0] / fit.sigma2.sum())
print("sigma2 =", np.asarray(fit.sigma2), " h2 =", h2, " status", int(fit.status))""",
    ),
    (
        "md",
        """The same numbers as `mmest` (MM4LMM's interface):""",
    ),
    (
        "code",
        """tight = dict(crit_var=1e-10, crit_loglik=1e-10, max_iter=10_000, verbose=False)
ref = mj.mmest(q.pheno.to_numpy(), var_list=[q.kinship.to_numpy(), np.eye(n)], **tight)
print("mmest sigma2 =", ref.sigma2_array[0])
assert np.allclose(ref.sigma2_array[0], fit.sigma2, rtol=1e-6)""",
    ),
    (
        "md",
        """## Influence of each individual on h²

Give individual *i* a weight `w_i` on its residual variance (error covariance `diag(1 / w)`;
`w = 1` is the ordinary model, `w_i = 0` removes the individual). `jax.jacrev` gives
`d h² / d w` for all 259 individuals in one reverse pass.""",
    ),
    (
        "code",
        """def h2_of_weights(w):
    s = core.fit(y, X, jnp.stack([K, jnp.diag(1.0 / w)])).sigma2
    return s[0] / s.sum()


ones = jnp.ones(n)
influence = jax.jit(jax.jacrev(h2_of_weights))(ones)
top = np.argsort(-np.abs(np.asarray(influence)))[:5]
print("largest |d h2 / d w_i|:", dict(zip(q.pheno.index[top], np.round(np.asarray(influence[top]), 5))))""",
    ),
    (
        "md",
        """Checked against central finite differences of refits (relative step 1e-5):""",
    ),
    (
        "code",
        """eps = 1e-5
check = []
for i in top[:3]:
    e = jnp.zeros(n).at[i].set(eps)
    fd = (h2_of_weights(ones + e) - h2_of_weights(ones - e)) / (2 * eps)
    check.append((q.pheno.index[i], float(influence[i]), float(fd)))
check = pd.DataFrame(check, columns=["individual", "implicit derivative", "finite difference"])
check["relative difference"] = (check["implicit derivative"] / check["finite difference"] - 1).abs()
print(check.to_string(index=False))
assert (check["relative difference"] < 1e-5).all()""",
    ),
    (
        "md",
        """The derivative is the first-order effect of down-weighting an individual: `-0.2 d h² / d w_i`
against refits with `w_i = 0.8`. Removing the individual (`w_i = 0`, last column) is far
outside the linear range: there the first-order prediction fails (dropping some individuals even
raises h²).""",
    ),
    (
        "code",
        """h2_all = float(h2_of_weights(ones))
rows = []
for i in top:
    keep = np.setdiff1d(np.arange(n), [i])
    s = core.fit(y[keep], X[keep], jnp.stack([K[np.ix_(keep, keep)], jnp.eye(n - 1)])).sigma2
    rows.append(
        (
            q.pheno.index[i],
            -0.2 * float(influence[i]),
            float(h2_of_weights(ones.at[i].set(0.8))) - h2_all,
            float(s[0] / s.sum()) - h2_all,
        )
    )
cols = ["individual", "-0.2 d h2 / d w_i", "h2(w_i = 0.8) - h2", "h2(without i) - h2"]
print(pd.DataFrame(rows, columns=cols).to_string(index=False))""",
    ),
    (
        "code",
        """fig, ax = plt.subplots()
ax.scatter(np.arange(n), np.asarray(influence), s=6)
ax.set_xlabel("individual")
ax.set_ylabel("d h2 / d w_i")
fig.tight_layout()""",
    ),
    (
        "md",
        """## Learning a kinship weighting by a held-out criterion (bilevel)

Two candidate kinships -- the real one `K1` and one from 1,000 random unrelated markers `K2` --
mixed as `K(a) = a K1 + (1 - a) K2`, `a = sigmoid(t)`. Inner problem: the ReML fit on 200
training individuals (`core.fit`). Outer problem: the Gaussian log-density of the 59 held-out
phenotypes given the training ones under the fitted model (BLUP mean, conditional covariance).
`jax.grad` of the outer criterion goes through the inner optimum.""",
    ),
    (
        "code",
        """g = jax.random.bernoulli(jax.random.PRNGKey(1), 0.3, (n, 1000)).astype(float)
g = (g - g.mean(0)) / g.std(0)
K2 = g @ g.T / 1000
perm = np.random.default_rng(0).permutation(n)
tr, te = np.sort(perm[:200]), np.sort(perm[200:])


def held_out_loglik(t):
    a = jax.nn.sigmoid(t)
    kin = a * K + (1 - a) * K2
    r = core.fit(y[tr], X[tr], jnp.stack([kin[np.ix_(tr, tr)], jnp.eye(tr.size)]))
    s_g, s_e = r.sigma2
    v = s_g * kin[np.ix_(tr, tr)] + s_e * jnp.eye(tr.size)
    c = s_g * kin[np.ix_(te, tr)]
    mean = X[te] @ r.beta + c @ jnp.linalg.solve(v, y[tr] - X[tr] @ r.beta)
    cov = s_g * kin[np.ix_(te, te)] + s_e * jnp.eye(te.size) - c @ jnp.linalg.solve(v, c.T)
    return jax.scipy.stats.multivariate_normal.logpdf(y[te], mean, cov)


value_and_grad = jax.jit(jax.value_and_grad(held_out_loglik))
t, m, v2 = 0.0, 0.0, 0.0
for it in range(1, 61):  # Adam ascent
    val, grad = value_and_grad(t)
    m, v2 = 0.9 * m + 0.1 * grad, 0.999 * v2 + 0.001 * grad**2
    t = t + 0.3 * (m / (1 - 0.9**it)) / (jnp.sqrt(v2 / (1 - 0.999**it)) + 1e-8)
a_grad = float(jax.nn.sigmoid(t))
print(f"gradient ascent: a = {a_grad:.3f}, held-out log-density {float(held_out_loglik(t)):.3f}")""",
    ),
    (
        "md",
        """Checked against a grid over `a` (each point a full refit) and the gradient against a finite
difference:""",
    ),
    (
        "code",
        """grid = np.linspace(0.01, 0.99, 50)
criterion = jax.jit(held_out_loglik)
crit = np.array([float(criterion(np.log(a / (1 - a)))) for a in grid])
a_grid = grid[np.argmax(crit)]
print(f"grid: best a = {a_grid:.3f}, held-out log-density {crit.max():.3f}")
fd = (held_out_loglik(0.3 + 1e-5) - held_out_loglik(0.3 - 1e-5)) / 2e-5
print(f"d criterion / dt at t = 0.3: implicit {float(value_and_grad(0.3)[1]):.8f}, finite difference {float(fd):.8f}")
assert abs(a_grad - a_grid) < 0.03
assert abs(float(value_and_grad(0.3)[1]) / float(fd) - 1) < 1e-5""",
    ),
    (
        "code",
        """fig, ax = plt.subplots()
ax.plot(grid, crit)
ax.axvline(a_grad, color="red", label="gradient ascent")
ax.set_xlabel("weight a of the real kinship")
ax.set_ylabel("held-out log-density")
ax.legend()
fig.tight_layout()""",
    ),
]


def _cell(kind: str, src: str):
    if kind == "md":
        return nbformat.v4.new_markdown_cell(src)
    return nbformat.v4.new_code_cell(src)


def build(name: str, cells) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [_cell(k, s) for k, s in cells if k in ("md", "code")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = OUT / name
    nbformat.write(nb, path)
    return path


NOTEBOOKS = {
    "01_variance_components.ipynb": VARIANCE_COMPONENTS,
    "02_qtl_detection.ipynb": QTL_DETECTION,
    "03_gwas_scan.ipynb": GWAS_SCAN,
    "04_jax_pipeline.ipynb": JAX_PIPELINE,
    "05_differentiable_fits.ipynb": DIFFERENTIABLE_FITS,
}


def main(argv: list[str]) -> None:
    only = [a.split("=", 1)[1] for a in argv if a.startswith("--only=")]
    for name, cells in NOTEBOOKS.items():
        if only and not any(o in name for o in only):
            continue
        path = build(name, cells)
        if "--no-execute" not in argv:
            nb = nbformat.read(path, as_version=4)
            NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(OUT)}}).execute()
            nbformat.write(nb, path)
        print("wrote", path)
    subprocess.run([sys.executable, "-m", "ruff", "check", "--fix", "-q", str(OUT)], check=False)
    subprocess.run([sys.executable, "-m", "ruff", "format", "-q", str(OUT)], check=False)


if __name__ == "__main__":
    main(sys.argv[1:])
