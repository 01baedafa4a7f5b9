//! Running statistics of batch whitening (`docs/reference.md` §2.6: momentum
//! 0.01).

mod common;

use common::*;
use tch::{Device, Kind, Tensor};
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

/// With momentum `m < 1` the running statistics are exponential moving
/// averages over the batches, `r ← m·batch + (1 − m)·r` from mean 0 and
/// covariance `I`, per group, with the unbiased batch covariance; written
/// out here in f64 over five batches of different means and scales, for
/// the reference momentum 0.01 and for 0.3. Evaluation whitens with the
/// running statistics: read back column by column (inputs `r_mean + e_j`),
/// its matrix `Φ` per group is symmetric with `Φ Σ_r Φᵀ = I` (ZCA).
#[test]
fn running_statistics_are_moving_averages_with_momentum_below_one() {
    let (w, d, g) = (64i64, 16i64, 2i64);
    let c = d / g;
    let opts = (Kind::Double, Device::Cpu);
    let cfg = WhiteningConfig::new(WhiteningAxis::Batch, WhiteningKind::Zca).with_groups(g);
    for m in [BatchWhiteningRunningStats::MOMENTUM, 0.3] {
        let mut stats = BatchWhiteningRunningStats::new(d, cfg.clone(), opts).unwrap();
        stats.momentum = m;
        let mut mean = vec![0.0f64; d as usize];
        let mut cov: Vec<Vec<Vec<f64>>> = (0..g)
            .map(|_| {
                (0..c)
                    .map(|i| (0..c).map(|j| f64::from(u8::from(i == j))).collect())
                    .collect()
            })
            .collect();
        for t in 0..5 {
            let x = input(1, w, d, Kind::Double, 90 + t).get(0) * (1.0 + t as f64) + t as f64;
            let _ = stats.forward_train(&x).unwrap();
            let rows: Vec<Vec<f64>> = (0..w)
                .map(|r| Vec::<f64>::try_from(x.get(r)).unwrap())
                .collect();
            let mu: Vec<f64> = (0..d as usize)
                .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / w as f64)
                .collect();
            for (k, group) in cov.iter_mut().enumerate() {
                for (i, row) in group.iter_mut().enumerate() {
                    for (j, v) in row.iter_mut().enumerate() {
                        let (a, b) = (k * c as usize + i, k * c as usize + j);
                        let batch = rows
                            .iter()
                            .map(|r| (r[a] - mu[a]) * (r[b] - mu[b]))
                            .sum::<f64>()
                            / (w - 1) as f64;
                        *v = m * batch + (1.0 - m) * *v;
                    }
                }
            }
            for (r, b) in mean.iter_mut().zip(&mu) {
                *r = m * b + (1.0 - m) * *r;
            }
        }
        let got_mean = Vec::<f64>::try_from(&stats.mean).unwrap();
        let err = got_mean
            .iter()
            .zip(&mean)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-12, "momentum {m}: running mean off by {err:e}");
        let want_cov =
            Tensor::from_slice(&cov.iter().flatten().flatten().copied().collect::<Vec<_>>())
                .view([g, c, c]);
        let err = (&stats.cov - &want_cov).abs().max().double_value(&[]);
        assert!(
            err < 1e-12,
            "momentum {m}: running covariance off by {err:e}"
        );
        // Not the last batch's covariance nor the initial I: history counts.
        let last_only = (&stats.cov - Tensor::eye(c, opts))
            .abs()
            .max()
            .double_value(&[]);
        assert!(last_only > 1e-3, "momentum {m}: the covariance never moved");

        // Evaluation: rows r_mean + e_j give the columns of Φᵀ, block by group.
        let probe = Tensor::eye(d, opts) + stats.mean.unsqueeze(0);
        let phi_t = stats.forward_eval(&probe).unwrap();
        for k in 0..g {
            let block = phi_t.narrow(0, k * c, c).narrow(1, k * c, c);
            let phi = block.tr();
            let sym = (&phi - &block).abs().max().double_value(&[]);
            let white = (phi.matmul(&stats.cov.get(k)).matmul(&block) - Tensor::eye(c, opts))
                .abs()
                .max()
                .double_value(&[]);
            assert!(
                sym < 1e-10 && white < 1e-10,
                "momentum {m} group {k}: {sym:e}, {white:e}"
            );
            // Nothing leaks between groups.
            let other = phi_t.narrow(0, k * c, c).narrow(1, (1 - k) * c, c);
            assert_eq!(other.abs().max().double_value(&[]), 0.0);
        }
    }
}
