"""Bundled data sets and the ``mm4lmm example`` command."""

from __future__ import annotations

import io

import numpy as np
from fixture_cases import as_vector, expected_models, load_case

import mm4lmm_jax as mj
from mm4lmm_jax.cli import main, run_example


def test_qtl_dataset_matches_fixture_inputs():
    q = mj.datasets.load_qtl_detection_example()
    inp = load_case("qtl_scan_reml")["inputs"]
    assert q.pheno.shape == (259,) and q.geno.shape == (259, 10) and q.kinship.shape == (259, 259)
    np.testing.assert_array_equal(q.pheno.to_numpy(), np.asarray(inp["y"], float))
    assert list(q.geno.columns) == inp["x"]["colnames"]


def test_variance_component_dataset_reproduces_mm4lmm():
    v = mj.datasets.load_variance_component_example()
    n = len(v.data)
    assert n == 432 and v.kinship_flint.shape == (122, 122) and v.kinship_dent.shape == (116, 116)
    assert (v.z_flint.to_numpy().sum(1) == 1).all() and list(v.z_dent.columns) == list(v.kinship_dent.index)
    res = mj.mmest(
        v.data["Trait"],
        cofactor=v.data[["Trial"]],
        formula="~ Trial",
        var_list={"Flint": v.kinship_flint, "Dent": v.kinship_dent, "Error": np.eye(n)},
        z_list={"Flint": v.z_flint, "Dent": v.z_dent, "Error": np.eye(n)},
        crit_var=1e-10,
        crit_loglik=1e-10,
        max_iter=10000,
        verbose=False,
    )
    ref = expected_models(load_case("hybrid_reml_formula"))[0]
    np.testing.assert_allclose(res[0].sigma2.to_numpy(), as_vector(ref["Sigma2"]), rtol=1e-6)


def test_example_command_prints_results():
    out = io.StringIO()
    run_example(out)
    text = out.getvalue()
    for piece in [
        "QTLDetectionExample",
        "SNP10",
        "VarianceComponentExample",
        "Flint",
        "TrialTrial2",
        "Wald",
        "F (KR)",
        "se (AI)",
        "GWAS example: 291 individuals, 400 markers",
        "lambda_GC",
        "p_wald",
    ]:
        assert piece in text
    assert main(["example"]) == 0


def test_package_import_is_light_and_shortens_openblas_spin():
    """``import mm4lmm_jax`` loads the GWAS path only (model, inference and data sets load on
    first use), starts no JAX backend, and sets a short OpenBLAS idle spin unless the user set one."""
    import os
    import subprocess
    import sys

    code = (
        "import os, sys, mm4lmm_jax, jax; "
        "print(os.environ['OPENBLAS_THREAD_TIMEOUT'], "
        "'mm4lmm_jax._estimate' in sys.modules, 'mm4lmm_jax.inference' in sys.modules, "
        "jax._src.xla_bridge._backends == {})"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["4", "False", "False", "True"]
    env["OPENBLAS_THREAD_TIMEOUT"] = "9"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split()[0] == "9"
    assert callable(mj.mmest) and callable(mj.gwas)
