//! Errors a user can act on (issue: name the condition and the remedy).

mod common;

use common::*;
use tch::{Device, Kind, Tensor};
use whitening_core::{
    whiten_with_permutations, WhiteningAxis, WhiteningConfig, WhiteningError, WhiteningKind,
};

#[test]
fn groups_must_divide_d() {
    let x = input(1, 8, 100, Kind::Float, 1);
    let cfg = WhiteningConfig::new(WhiteningAxis::Channel, WhiteningKind::Zca).with_groups(3);
    let err = whiten_with_permutations(&x, &cfg, None).unwrap_err();
    assert!(matches!(
        err,
        WhiteningError::GroupsDoNotDivide { d: 100, groups: 3 }
    ));
    assert!(err.to_string().contains("not divisible"), "{err}");
}

#[test]
fn cw_needs_more_channels_per_group_than_examples() {
    // d/g = 32 channels for 64 examples: rank ≤ 32 < 64.
    let x = input(1, 64, 128, Kind::Float, 2);
    let cfg = WhiteningConfig::cw_rgp(4);
    let err = whiten_with_permutations(&x, &cfg, None)
        .unwrap_err()
        .to_string();
    for needle in [
        "channel (CW)",
        "d/g ≥ w_size",
        "eps",
        "fewer groups (g ≤ 2)",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in: {err}");
    }
    // Shrinkage makes it well-posed.
    let ok = whiten_with_permutations(&x, &cfg.clone().with_eps(0.1), None);
    assert!(ok.is_ok());
}

/// CW centres each example over all `d` channels and then groups, so with
/// g > 1 a group's `d/g` channels are not centred on their own: `d/g = w`
/// channels give a full-rank `w × w` covariance, and the whitening is
/// exact. Without groups the centring costs one: `d = w` is singular.
#[test]
fn cw_with_groups_accepts_as_many_channels_per_group_as_examples() {
    let (w, d) = (32i64, 64i64);
    let x = input(2, w, d, Kind::Double, 6);
    for cfg in [
        WhiteningConfig::new(WhiteningAxis::Channel, WhiteningKind::Zca).with_groups(2),
        WhiteningConfig::cw_rgp(2),
        WhiteningConfig::new(WhiteningAxis::Channel, WhiteningKind::Cholesky).with_groups(2),
    ] {
        let perms = cfg.random_partition.then(|| {
            Tensor::stack(
                &[
                    Tensor::randperm(d, (Kind::Int64, Device::Cpu)),
                    Tensor::randperm(d, (Kind::Int64, Device::Cpu)),
                ],
                0,
            )
        });
        let z = whiten_with_permutations(&x, &cfg, perms.as_ref())
            .unwrap_or_else(|e| panic!("{:?} g = 2, d/g = w = {w}: {e}", cfg.kind));
        // Each group's w × w covariance of the whitened data is I. With
        // fixed groups, group k is channels [32k, 32k + 32).
        if perms.is_none() {
            for n in 0..2 {
                for k in 0..2 {
                    let a = z.get(n).narrow(1, k * 32, 32); // [w, c]: samples are channels
                    let cov = a.matmul(&a.tr()) / 31.0;
                    let err = (cov - Tensor::eye(w, (Kind::Double, Device::Cpu)))
                        .abs()
                        .max()
                        .double_value(&[]);
                    assert!(
                        err < 1e-8,
                        "{:?} matrix {n} group {k}: |Σ − I| = {err:e}",
                        cfg.kind
                    );
                }
            }
        }
    }
    // One channel fewer per group, or no groups with d = w: rank-deficient.
    let x = input(1, w, d - 2, Kind::Double, 7);
    let cfg = WhiteningConfig::new(WhiteningAxis::Channel, WhiteningKind::Zca).with_groups(2);
    let err = whiten_with_permutations(&x, &cfg, None).unwrap_err();
    assert!(
        matches!(err, WhiteningError::RankDeficient { rank: 31, .. }),
        "{err}"
    );
    let x = input(1, w, w, Kind::Double, 8);
    let cfg = WhiteningConfig::new(WhiteningAxis::Channel, WhiteningKind::Zca);
    let err = whiten_with_permutations(&x, &cfg, None).unwrap_err();
    assert!(
        matches!(err, WhiteningError::RankDeficient { rank: 31, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("d > w_size"), "{err}");
}

#[test]
fn bw_needs_more_examples_than_channels_per_group() {
    let x = input(1, 32, 64, Kind::Float, 3);
    let err = whiten_with_permutations(&x, &WhiteningConfig::w_mse(), None)
        .unwrap_err()
        .to_string();
    for needle in ["batch (BW)", "w_size > d/g", "eps"] {
        assert!(err.contains(needle), "missing {needle:?} in: {err}");
    }
}

#[test]
fn non_finite_whitening_matrix_reports_condition_number() {
    // A constant channel (a dead unit) makes the BW covariance exactly
    // singular although w > d passes the shape check: its row and column
    // are exact zeros, so the eigenvalue is an exact 0 and Λ^{-1/2} = inf.
    let x = input(1, 32, 8, Kind::Double, 4);
    let x = Tensor::cat(
        &[
            x.narrow(2, 0, 7),
            Tensor::full([1, 32, 1], 5.0, (Kind::Double, Device::Cpu)),
        ],
        2,
    );
    for kind in [WhiteningKind::Zca, WhiteningKind::Cholesky] {
        let cfg = WhiteningConfig::new(WhiteningAxis::Batch, kind);
        let err = whiten_with_permutations(&x, &cfg, None).unwrap_err();
        match &err {
            WhiteningError::NonFinite { condition, .. } => {
                assert!(*condition > 1e15, "{kind}: condition {condition}")
            }
            other => panic!("{kind}: expected NonFinite, got {other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("condition number") && msg.contains("eps"),
            "{msg}"
        );
    }
}

#[test]
fn bad_shapes_and_dtypes_are_named() {
    let cfg = WhiteningConfig::cw_rgp(1);
    let two_d = Tensor::zeros([4, 8], (Kind::Float, Device::Cpu));
    assert!(whiten_with_permutations(&two_d, &cfg, None)
        .unwrap_err()
        .to_string()
        .contains("[n, w, d]"));
    let ints = Tensor::zeros([1, 4, 8], (Kind::Int64, Device::Cpu));
    assert!(whiten_with_permutations(&ints, &cfg, None)
        .unwrap_err()
        .to_string()
        .contains("floating-point"));
    let h = input(2, 10, 64, Kind::Float, 5);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let err = whitening_core::whiten_sub_batches(&h, 4, &cfg, &mut rng)
        .unwrap_err()
        .to_string();
    assert!(err.contains("w_size = 4"), "{err}");
}
