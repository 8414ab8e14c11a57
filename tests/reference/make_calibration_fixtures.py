#!/usr/bin/env python3
"""Generates tests/fixtures/calibration/: committed logits and labels, with the
expected calibration of each case, for test_calib.

The reference is written here in NumPy, independently of tessera's C, after
the code of Guo et al., "On Calibration of Modern Neural Networks" (2017,
github.com/gpleiss/temperature_scaling): the confidence is the arg max's
softmax probability; bin b of B equal-width bins holds the confidences in
(b/B, (b+1)/B]; ECE = sum_b |acc_b - conf_b| * n_b / N; MCE = max_b |acc_b -
conf_b|; NLL = mean -log p(label). The temperature minimises the NLL of
softmax(logits / T): found here by bisection on the sign of its derivative
in log T, confirmed by a golden-section search on the NLL (tessera uses
safeguarded Newton steps on 1/T), and, when PyTorch is installed,
cross-checked with torch.optim.LBFGS as the reference repository fits it.

    pip install numpy [torch]
    python3 tests/reference/make_calibration_fixtures.py
"""
import json
import math
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "fixtures", "calibration")


def log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def calibration(logits, labels, T, bins):
    lp = log_softmax(logits.astype(np.float64) / T)
    p = np.exp(lp)
    conf = p.max(1)
    pred = p.argmax(1)
    acc = (pred == labels).astype(np.float64)
    edges = np.linspace(0, 1, bins + 1)
    out = {"count": [], "conf": [], "acc": []}
    ece = mce = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        n = int(m.sum())
        out["count"].append(n)
        if n:
            c, a = float(conf[m].mean()), float(acc[m].mean())
            ece += abs(a - c) * n / len(labels)
            mce = max(mce, abs(a - c))
        else:
            c = a = 0.0
        out["conf"].append(c)
        out["acc"].append(a)
    out.update(ece=ece, mce=mce, nll=float(-lp[np.arange(len(labels)), labels].mean()),
               accuracy=float(acc.mean()), temperature=T, bins=bins)
    return out


def nll(logits, labels, T):
    lp = log_softmax(logits.astype(np.float64) / T)
    return -lp[np.arange(len(labels)), labels].mean()


def dnll_dlogT(logits, labels, T):
    """d NLL / d log T = mean(z_y - E_p[z]) / T, from the definition."""
    z = logits.astype(np.float64)
    p = np.exp(log_softmax(z / T))
    return float((z[np.arange(len(labels)), labels] - (p * z).sum(1)).mean() / T)


def fit_temperature(logits, labels):
    """Bisection on the sign of the NLL's derivative in log T over [1e-3, 1e3]
    (the NLL is convex in 1/T, so the derivative changes sign once); the
    golden-section search on the NLL itself confirms the minimum to the
    precision a function value allows (about 1e-8)."""
    a, b = math.log(1e-3), math.log(1e3)
    assert dnll_dlogT(logits, labels, math.exp(a)) < 0 < dnll_dlogT(logits, labels, math.exp(b))
    for _ in range(200):
        m = (a + b) / 2
        if dnll_dlogT(logits, labels, math.exp(m)) < 0:
            a = m
        else:
            b = m
    T = math.exp((a + b) / 2)
    g = golden_temperature(logits, labels)
    assert abs(g - T) < 1e-6 * T, (g, T)
    return T


def golden_temperature(logits, labels):
    """Golden-section search on log T in [log 1e-3, log 1e3] (NLL is unimodal in T)."""
    a, b = math.log(1e-3), math.log(1e3)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(logits, labels, math.exp(c)), nll(logits, labels, math.exp(d))
    while b - a > 1e-13:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(logits, labels, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(logits, labels, math.exp(d))
    return math.exp((a + b) / 2)


def lbfgs_temperature(logits, labels):
    try:
        import torch
    except ImportError:
        return None
    z = torch.tensor(logits, dtype=torch.float64)
    y = torch.tensor(labels)
    t = torch.ones(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([t], lr=0.1, max_iter=500, tolerance_grad=1e-14,
                            tolerance_change=1e-16, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / t, y)
        loss.backward()
        return loss
    opt.step(closure)
    return float(t.item())


def make_case(rng, name, n, L, signal, scale, bins, T_eval):
    labels = rng.integers(0, L, n)
    z = rng.normal(0, 1, (n, L))
    z[np.arange(n), labels] += signal * rng.uniform(0.2, 1.8, n)
    logits = (scale * z).astype(np.float32)
    T = fit_temperature(logits, labels)
    tl = lbfgs_temperature(logits, labels)
    if tl is not None:
        assert abs(tl - T) < 1e-6 * T, (name, T, tl)
    np.save(os.path.join(OUT, f"{name}_logits.npy"), logits)
    case = {"name": name, "labels": labels.tolist(), "fitted_temperature": T,
            "at_temperature": calibration(logits, labels, T_eval, bins),
            "at_one": calibration(logits, labels, 1.0, bins),
            "after_fit": calibration(logits, labels, T, bins)}
    print(f"{name}: N {n}, L {L}, accuracy {case['at_one']['accuracy']:.3f}, "
          f"ECE {case['at_one']['ece']:.4f} -> {case['after_fit']['ece']:.4f} at T {T:.6f}"
          + (f" (LBFGS {tl:.6f})" if tl is not None else ""))
    return case


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(1207)
    cases = [make_case(rng, "overconfident", 437, 13, 1.6, 6.0, 15, 2.5),
             make_case(rng, "underconfident", 301, 7, 2.4, 0.45, 15, 0.7),
             make_case(rng, "two_classes", 211, 2, 1.1, 3.0, 10, 1.3)]
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()
