//! Gradients: autograd against central finite differences in f64, the
//! paper's stop-gradient decomposition, and finiteness near degeneracy.

mod common;

use common::*;
use tch::{Device, Kind, Tensor};
use whitening_core::{whiten_with_permutations, WhiteningAxis, WhiteningConfig, WhiteningKind};

/// `L(x) = Σ whiten(x) ⊙ R` for a fixed random `R`: a generic scalar
/// whose gradient exercises every output entry.
fn scalar_loss(x: &Tensor, cfg: &WhiteningConfig, r: &Tensor) -> Tensor {
    (whiten_with_permutations(x, cfg, None).unwrap() * r).sum(Kind::Double)
}

#[test]
fn autograd_matches_finite_differences_for_every_kind() {
    // Central differences with h = 1e-6 in f64 have truncation error O(h²)
    // and round-off O(1e-16/h) ≈ 1e-10 relative: 1e-5 relative is ample
    // margin, and a wrong backward is off by O(1).
    let kinds = [
        WhiteningKind::Zca,
        WhiteningKind::Pca,
        WhiteningKind::Cholesky,
        WhiteningKind::NewtonSchulz { iterations: 4 },
    ];
    for axis in [WhiteningAxis::Batch, WhiteningAxis::Channel] {
        let (w, d) = match axis {
            WhiteningAxis::Batch => (12, 4),
            WhiteningAxis::Channel => (4, 16),
        };
        for kind in kinds {
            let cfg = config(axis, kind, 2, false);
            let x = input(1, w, d, Kind::Double, 31).set_requires_grad(true);
            tch::manual_seed(32);
            let r = Tensor::randn([1, w, d], (Kind::Double, Device::Cpu));
            let loss = scalar_loss(&x, &cfg, &r);
            let grad = Tensor::run_backward(&[loss], &[&x], false, false)
                .pop()
                .unwrap();
            let h = 1e-6;
            let x0 = x.detach();
            for flat in [0, 5, w * d / 2 + 1, w * d - 1] {
                let (i, j) = (flat / d, flat % d);
                let bump = |delta: f64| {
                    let xp = x0.copy();
                    let _ = xp.get(0).get(i).get(j).g_add_scalar_(delta);
                    scalar_loss(&xp, &cfg, &r).double_value(&[])
                };
                let numeric = (bump(h) - bump(-h)) / (2.0 * h);
                let analytic = grad.get(0).get(i).get(j).double_value(&[]);
                let scale = numeric.abs().max(analytic.abs()).max(1e-3);
                assert!(
                    (numeric - analytic).abs() / scale < 1e-5,
                    "{axis} {kind} entry ({i},{j}): autograd {analytic} vs finite difference {numeric}"
                );
            }
        }
    }
}

#[test]
fn stop_gradient_decomposition_holds() {
    // The paper's proposition (docs/reference.md §2.5): ∂L/∂θ = ∂L'/∂θ with
    // L = 1/m ‖Ẑ₁ − Ẑ₂‖² and L' = 1/m ‖Ẑ₁ − sg(Ẑ₂)‖² + 1/m ‖sg(Ẑ₁) − Ẑ₂‖².
    let (m, d) = (16i64, 64i64);
    let h = input(2, m, d, Kind::Double, 41).set_requires_grad(true);
    let cfg = WhiteningConfig::new(WhiteningAxis::Channel, WhiteningKind::Zca).with_groups(2);
    let z = whiten_with_permutations(&h, &cfg, None).unwrap();
    let (z1, z2) = (z.get(0), z.get(1));
    let full = (&z1 - &z2).square().sum(Kind::Double) / m as f64;
    let g_full = Tensor::run_backward(&[full], &[&h], false, false)
        .pop()
        .unwrap();

    let z = whiten_with_permutations(&h, &cfg, None).unwrap();
    let (z1, z2) = (z.get(0), z.get(1));
    let proxy = (&z1 - z2.detach()).square().sum(Kind::Double) / m as f64
        + (z1.detach() - &z2).square().sum(Kind::Double) / m as f64;
    let g_proxy = Tensor::run_backward(&[proxy], &[&h], false, false)
        .pop()
        .unwrap();
    let diff = (&g_full - &g_proxy).abs().max().double_value(&[]);
    let size = g_full.abs().max().double_value(&[]);
    assert!(size > 1e-3, "gradient is trivially small: {size}");
    assert!(diff < 1e-12 * size.max(1.0), "|∂L - ∂L'| = {diff:e}");

    // One term alone is a different gradient (the decomposition is not vacuous).
    let z = whiten_with_permutations(&h, &cfg, None).unwrap();
    let one = (z.get(0) - z.get(1).detach()).square().sum(Kind::Double) / m as f64;
    let g_one = Tensor::run_backward(&[one], &[&h], false, false)
        .pop()
        .unwrap();
    assert!((&g_full - g_one).abs().max().double_value(&[]) > 1e-3 * size);
}

#[test]
fn shrinkage_keeps_gradients_finite_near_degenerate_spectra() {
    // Examples that are nearly collinear: the CW covariance has eigenvalues
    // around 1e-10 besides one large one. With eps = 1e-3 the smallest
    // eigenvalue is ≥ 1e-3, so Λ^{-1/2} and the eigh backward stay finite.
    let (w, d) = (8i64, 64i64);
    tch::manual_seed(51);
    let base = Tensor::randn([1, 1, d], (Kind::Float, Device::Cpu));
    let x = (base.expand([1, w, d], false)
        + Tensor::randn([1, w, d], (Kind::Float, Device::Cpu)) * 1e-5)
        .set_requires_grad(true);
    for kind in [
        WhiteningKind::Zca,
        WhiteningKind::Cholesky,
        WhiteningKind::NewtonSchulz { iterations: 5 },
    ] {
        let cfg = WhiteningConfig::new(WhiteningAxis::Channel, kind).with_eps(1e-3);
        let z = whiten_with_permutations(&x, &cfg, None).unwrap();
        assert!(
            z.isfinite().all().int64_value(&[]) == 1,
            "{kind}: non-finite output"
        );
        let loss = z.square().sum(Kind::Float) + z.narrow(1, 0, 1).sum(Kind::Float);
        let g = Tensor::run_backward(&[loss], &[&x], false, false)
            .pop()
            .unwrap();
        assert!(
            g.isfinite().all().int64_value(&[]) == 1,
            "{kind}: non-finite gradient"
        );
    }
}
