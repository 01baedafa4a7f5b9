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
    // d/g = 32 channels for 64 examples: rank ≤ 31 < 64.
    let x = input(1, 64, 128, Kind::Float, 2);
    let cfg = WhiteningConfig::cw_rgp(4);
    let err = whiten_with_permutations(&x, &cfg, None)
        .unwrap_err()
        .to_string();
    for needle in ["channel (CW)", "d/g > w_size", "eps", "fewer groups"] {
        assert!(err.contains(needle), "missing {needle:?} in: {err}");
    }
    // Shrinkage makes it well-posed.
    let ok = whiten_with_permutations(&x, &cfg.clone().with_eps(0.1), None);
    assert!(ok.is_ok());
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
