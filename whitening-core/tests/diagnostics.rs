//! Rank diagnostics on matrices with known spectra (`docs/reference.md` §7.5).

mod common;

use common::*;
use ndarray::Array2;
use tch::{Device, Kind, Tensor};
use whitening_core::diagnostics::{covariance_spectrum, rank_diagnostics, RankDiagnostics};
use whitening_core::{whiten_with_permutations, WhiteningAxis, WhiteningConfig, WhiteningKind};

/// `U diag(s) Vᵀ` with random orthonormal `U` (m × r) and `V` (d × r).
fn with_singular_values(m: i64, d: i64, s: &[f64]) -> Tensor {
    let r = s.len() as i64;
    tch::manual_seed(61);
    let u = Tensor::linalg_qr(
        &Tensor::randn([m, r], (Kind::Double, Device::Cpu)),
        "reduced",
    )
    .0;
    let v = Tensor::linalg_qr(
        &Tensor::randn([d, r], (Kind::Double, Device::Cpu)),
        "reduced",
    )
    .0;
    (u * Tensor::from_slice(s).unsqueeze(0)).matmul(&v.transpose(0, 1))
}

#[test]
fn known_spectrum_gives_closed_form_ranks() {
    let s = [4.0, 2.0, 2.0, 1.0];
    let a = with_singular_values(30, 20, &s);
    let r = rank_diagnostics(&a).unwrap();
    // ‖A‖²_F/‖A‖²_2 = (16 + 4 + 4 + 1) / 16.
    assert!(
        (r.stable_rank - 25.0 / 16.0).abs() < 1e-10,
        "{}",
        r.stable_rank
    );
    assert!((r.normalised_stable_rank - 25.0 / 16.0 / 20.0).abs() < 1e-10);
    // p = (4, 2, 2, 1)/9; effective rank = exp(-Σ p ln p).
    let p = s.map(|x| x / 9.0);
    let h: f64 = p.iter().map(|p| -p * p.ln()).sum();
    assert!(
        (r.effective_rank - h.exp()).abs() < 1e-9,
        "{} vs {}",
        r.effective_rank,
        h.exp()
    );
    for (got, want) in r.singular_values.iter().zip(s) {
        assert!((got - want).abs() < 1e-10);
    }
    // The f64 LAPACK route agrees.
    let nd = oracle::rank_diagnostics(to_array(&a).view()).unwrap();
    assert!((nd.stable_rank - r.stable_rank).abs() < 1e-10);
    assert!((nd.effective_rank - r.effective_rank).abs() < 1e-9);
}

#[test]
fn identity_has_full_rank() {
    let r = oracle::rank_diagnostics(Array2::<f64>::eye(7).view()).unwrap();
    assert!((r.stable_rank - 7.0).abs() < 1e-12);
    assert!((r.normalised_stable_rank - 1.0).abs() < 1e-12);
    assert!((r.effective_rank - 7.0).abs() < 1e-10);
}

#[test]
fn rank_one_and_zero_matrices() {
    let r = rank_diagnostics(&with_singular_values(10, 6, &[3.0])).unwrap();
    assert!((r.stable_rank - 1.0).abs() < 1e-10 && (r.effective_rank - 1.0).abs() < 1e-6);
    let z = RankDiagnostics::from_singular_values(vec![0.0; 4], 4, 4);
    assert_eq!((z.stable_rank, z.effective_rank), (0.0, 0.0));
}

#[test]
fn whitened_output_reaches_full_normalised_stable_rank() {
    // docs/reference.md §7.5: Ẑ always reaches 100% — CW with g groups
    // gives ẐẐᵀ = (d − g) I.
    let x = input(1, 16, 128, Kind::Double, 62);
    for groups in [1, 4] {
        let cfg =
            WhiteningConfig::new(WhiteningAxis::Channel, WhiteningKind::Zca).with_groups(groups);
        let z = whiten_with_permutations(&x, &cfg, None).unwrap().get(0);
        let r = rank_diagnostics(&z).unwrap();
        assert!(
            (r.normalised_stable_rank - 1.0).abs() < 1e-9,
            "g={groups}: {}",
            r.normalised_stable_rank
        );
    }
    // And the raw input does not (the check can fail).
    assert!(rank_diagnostics(&x.get(0)).unwrap().normalised_stable_rank < 0.9);
}

#[test]
fn covariance_spectrum_of_scaled_axes() {
    // Independent columns with std 3, 2, 1: covariance eigenvalues ≈ 9, 4, 1.
    tch::manual_seed(63);
    let x = Tensor::randn([20000, 3], (Kind::Double, Device::Cpu))
        * Tensor::from_slice(&[3.0, 2.0, 1.0]);
    let eig = covariance_spectrum(&x).unwrap();
    // Sampling error of a variance from 20k draws: ~ σ²·sqrt(2/20000) ≈ 1% → 5% tolerance.
    for (got, want) in eig.iter().zip([9.0, 4.0, 1.0]) {
        assert!((got - want).abs() / want < 0.05, "{eig:?}");
    }
}
