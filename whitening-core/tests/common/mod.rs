//! Shared helpers of the whitening-core tests.
#![allow(dead_code)]

pub mod oracle;

use ndarray::Array2;
use tch::{Device, Kind, Tensor};
use whitening_core::{WhiteningAxis, WhiteningConfig, WhiteningKind};

/// `[n, w, d]` seeded standard-normal input in the given precision, with a
/// random per-channel scale so covariances are not near-isotropic.
pub fn input(n: i64, w: i64, d: i64, kind: Kind, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    let x = Tensor::randn([n, w, d], (Kind::Double, Device::Cpu));
    let scale = Tensor::rand([1, 1, d], (Kind::Double, Device::Cpu)) + 0.5;
    (x * scale).to_kind(kind)
}

pub fn to_array(t: &Tensor) -> Array2<f64> {
    let (r, c) = (t.size()[0] as usize, t.size()[1] as usize);
    let v = Vec::<f64>::try_from(t.to_kind(Kind::Double).contiguous().view([-1])).unwrap();
    Array2::from_shape_vec((r, c), v).unwrap()
}

pub fn max_abs_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    assert_eq!(a.dim(), b.dim());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Every (axis, kind) pair the crate implements, with shapes that make the
/// covariance full rank: BW `w = 64 > d/g`, CW `d/g ≥ 32 > w = 16`.
pub fn all_kinds() -> Vec<WhiteningKind> {
    vec![
        WhiteningKind::Zca,
        WhiteningKind::Pca,
        WhiteningKind::Cholesky,
        WhiteningKind::NewtonSchulz { iterations: 6 },
    ]
}

pub fn shape_for(axis: WhiteningAxis) -> (i64, i64) {
    match axis {
        WhiteningAxis::Batch => (64, 16),
        WhiteningAxis::Channel => (16, 128),
    }
}

pub fn config(axis: WhiteningAxis, kind: WhiteningKind, groups: i64, rgp: bool) -> WhiteningConfig {
    WhiteningConfig {
        groups,
        random_partition: rgp,
        ..WhiteningConfig::new(axis, kind)
    }
}
