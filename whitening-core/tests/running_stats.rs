//! Running statistics of batch whitening (`docs/reference.md` §2.6: momentum
//! 0.01).

mod common;

use common::*;
use tch::Kind;
use whitening_core::{BatchWhiteningRunningStats, WhiteningAxis, WhiteningConfig, WhiteningKind};

#[test]
fn momentum_update_and_eval_whitening() {
    let (w, d) = (64i64, 16i64);
    let x = input(1, w, d, Kind::Float, 71).get(0);
    let cfg = WhiteningConfig::new(WhiteningAxis::Batch, WhiteningKind::Zca).with_groups(2);
    let mut stats =
        BatchWhiteningRunningStats::new(d, cfg.clone(), (Kind::Float, tch::Device::Cpu)).unwrap();
    let batch_mean = x.mean_dim(0, false, None);
    let train = stats.forward_train(&x).unwrap();
    // After one update: r = 0.01·batch + 0.99·initial (mean 0).
    let err = (&stats.mean - &batch_mean * 0.01)
        .abs()
        .max()
        .double_value(&[]);
    assert!(err < 1e-6, "{err}");
    // With momentum 1 the running statistics are the batch's, so evaluation
    // whitening reproduces training whitening.
    stats.momentum = 1.0;
    let train2 = stats.forward_train(&x).unwrap();
    let eval = stats.forward_eval(&x).unwrap();
    assert!((&train2 - &eval).abs().max().double_value(&[]) < 1e-4);
    assert!((&train - &train2).abs().max().double_value(&[]) < 1e-5);
}

#[test]
fn channel_whitening_has_no_running_statistics() {
    let err = BatchWhiteningRunningStats::new(
        64,
        WhiteningConfig::cw_rgp(2),
        (Kind::Float, tch::Device::Cpu),
    )
    .unwrap_err();
    assert!(err.to_string().contains("batch whitening"), "{err}");
}
