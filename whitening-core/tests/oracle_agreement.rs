//! The batched tch path against the f64 ndarray oracle, for every axis ×
//! kind × grouping (none, fixed groups, random partition).

mod common;

use common::*;
use rand::SeedableRng;
use tch::{Kind, Tensor};
use whitening_core::{
    random_group_partition, whiten_with_permutations, WhiteningAxis, WhiteningKind,
};

/// PCA components have arbitrary signs (eigh in tch, SVD in the oracle):
/// flips the sign of each oracle component to match ours. A component is a
/// column of the data matrix `A Φᵀ`: a channel (BW) or an example (CW).
fn align_pca_signs(
    ours: &ndarray::Array2<f64>,
    oracle: &mut ndarray::Array2<f64>,
    axis: WhiteningAxis,
    perm: &[usize],
    channels_per_group: usize,
) {
    let (w, d) = ours.dim();
    match axis {
        WhiteningAxis::Batch => {
            for ch in 0..d {
                let dot: f64 = ours.column(ch).dot(&oracle.column(ch));
                if dot < 0.0 {
                    oracle.column_mut(ch).mapv_inplace(|v| -v);
                }
            }
        }
        WhiteningAxis::Channel => {
            for g in 0..d / channels_per_group {
                let cols = &perm[g * channels_per_group..(g + 1) * channels_per_group];
                for e in 0..w {
                    let dot: f64 = cols.iter().map(|&c| ours[[e, c]] * oracle[[e, c]]).sum();
                    if dot < 0.0 {
                        for &c in cols {
                            oracle[[e, c]] = -oracle[[e, c]];
                        }
                    }
                }
            }
        }
    }
}

/// Checks one configuration: tch in f64 must agree with the oracle to
/// round-off (1e-8: same maths, different order of operations), tch in f32
/// to 2e-3 (f32 round-off amplified by condition numbers below ~100 of
/// these random covariances).
fn check(axis: WhiteningAxis, kind: WhiteningKind, groups: i64, rgp: bool) {
    let (w, d) = shape_for(axis);
    let n = 3;
    let cfg = config(axis, kind, groups, rgp);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let perms = rgp.then(|| random_group_partition(n, d, &mut rng));
    for (precision, tol) in [(Kind::Double, 1e-8), (Kind::Float, 2e-3)] {
        let x = input(n, w, d, precision, 11);
        let ours = whiten_with_permutations(&x, &cfg, perms.as_ref()).unwrap();
        for i in 0..n {
            let perm: Option<Vec<usize>> = perms.as_ref().map(|p| {
                Vec::<i64>::try_from(p.get(i))
                    .unwrap()
                    .into_iter()
                    .map(|v| v as usize)
                    .collect()
            });
            let xi = to_array(&x.get(i));
            let mut expected = oracle::whiten(xi.view(), &cfg, perm.as_deref()).unwrap();
            let got = to_array(&ours.get(i));
            if kind == WhiteningKind::Pca {
                let identity: Vec<usize> = (0..d as usize).collect();
                let p = perm.as_deref().unwrap_or(&identity);
                align_pca_signs(&got, &mut expected, axis, p, (d / groups) as usize);
            }
            let err = max_abs_diff(&got, &expected);
            assert!(
                err < tol,
                "{axis} {kind} g={groups} rgp={rgp} {precision:?}: max |tch - oracle| = {err:e} > {tol:e}"
            );
        }
    }
}

#[test]
fn batch_whitening_matches_oracle() {
    for kind in all_kinds() {
        check(WhiteningAxis::Batch, kind, 1, false);
        check(WhiteningAxis::Batch, kind, 2, false);
        check(WhiteningAxis::Batch, kind, 4, true);
    }
}

#[test]
fn channel_whitening_matches_oracle() {
    for kind in all_kinds() {
        check(WhiteningAxis::Channel, kind, 1, false);
        check(WhiteningAxis::Channel, kind, 2, false);
        check(WhiteningAxis::Channel, kind, 4, true);
    }
}

#[test]
fn shrinkage_matches_oracle() {
    let mut cfg = config(WhiteningAxis::Channel, WhiteningKind::Zca, 2, false);
    cfg.eps = 0.1;
    cfg.minus = 0.0;
    let x = input(2, 16, 64, Kind::Double, 3);
    let ours = whiten_with_permutations(&x, &cfg, None).unwrap();
    let expected = oracle::whiten(to_array(&x.get(1)).view(), &cfg, None).unwrap();
    assert!(max_abs_diff(&to_array(&ours.get(1)), &expected) < 1e-9);
}

#[test]
fn batched_call_equals_one_matrix_at_a_time() {
    // One batched call over n matrices must equal n separate calls.
    let cfg = config(WhiteningAxis::Channel, WhiteningKind::Zca, 4, false);
    let x = input(5, 16, 128, Kind::Double, 5);
    let all = whiten_with_permutations(&x, &cfg, None).unwrap();
    for i in 0..5 {
        let one = whiten_with_permutations(&x.narrow(0, i, 1), &cfg, None).unwrap();
        let diff = (&all.get(i) - one.get(0)).abs().max().double_value(&[]);
        assert!(diff < 1e-12, "matrix {i}: {diff:e}");
    }
    let _ = Tensor::zeros([1], (Kind::Float, tch::Device::Cpu));
}
