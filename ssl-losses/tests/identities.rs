//! Closed-form identities of the losses (`docs/reference.md` §3): zero
//! whitening loss for identical views, the range of the normalised MSE,
//! SimCLR's value at perfect positives with orthogonal negatives, BYOL's
//! schedule and EMA, Sinkhorn–Knopp's marginals.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ssl_losses::{
    barlow_twins_loss, byol_tau, ema_update, norm_mse, nt_xent, sinkhorn_knopp, LossError,
    WhiteningLoss,
};
use std::f64::consts::PI;

use tch::{Device, Kind, Tensor};
use whitening_core::{WhiteningAxis, WhiteningConfig, WhiteningKind};

const OPTS: (Kind, Device) = (Kind::Float, Device::Cpu);

/// `views` identical copies of one random `[m, d]` view.
fn identical_views(views: i64, m: i64, d: i64, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randn([1, m, d], OPTS)
        .expand([views, m, d], false)
        .contiguous()
}

fn value(loss: Result<Tensor, LossError>) -> f64 {
    loss.expect("loss").double_value(&[])
}

/// Identical views are transformed identically (same sub-batches, same
/// covariances) whenever the transform draws no per-view randomness, so
/// every pair has cosine 1: the loss is 0 up to f32 rounding (≤ 1e-5 for
/// rows of norm ~√d; measured ≤ 2e-6).
#[test]
fn identical_views_give_zero_whitening_loss() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let channel = |kind| WhiteningConfig::new(WhiteningAxis::Channel, kind);
    let cases = [
        (
            "cw",
            WhiteningLoss::whitened(channel(WhiteningKind::Zca), 16),
            64,
        ),
        (
            "cw-gp",
            WhiteningLoss::whitened(channel(WhiteningKind::Zca).with_groups(2), 16),
            64,
        ),
        (
            "cw-rgp g=1",
            WhiteningLoss::whitened(WhiteningConfig::cw_rgp(1), 16),
            64,
        ),
        (
            "pca",
            WhiteningLoss::whitened(channel(WhiteningKind::Pca), 16),
            64,
        ),
        (
            "w-mse",
            WhiteningLoss::whitened(WhiteningConfig::w_mse(), 32),
            8,
        ),
        ("shuffled-dbn", WhiteningLoss::shuffled_dbn(16, 1e-5), 8),
        ("plain", WhiteningLoss::plain(), 8),
    ];
    for (name, loss, d) in cases {
        for views in [2, 4] {
            let h = identical_views(views, 64, d, 1);
            let v = value(loss.loss(&h, 0, &mut rng));
            assert!(
                v.abs() < 1e-5,
                "{name}, {views} views: loss {v} for identical views"
            );
            let v = value(loss.clone().with_normalized(false).loss(&h, 0, &mut rng));
            assert!(v.abs() < 1e-5, "{name}, {views} views, plain MSE: loss {v}");
        }
    }
}

/// With g > 1, RGP draws a different channel partition for each view, so
/// even identical views are whitened differently: the loss is positive.
/// This is what makes CW-RGP's target differ from its input.
#[test]
fn random_group_partition_separates_identical_views() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let h = identical_views(2, 64, 64, 2);
    let v = value(WhiteningLoss::whitened(WhiteningConfig::cw_rgp(2), 16).loss(&h, 0, &mut rng));
    assert!(v > 0.1, "CW-RGP g=2 on identical views: {v}");
}

/// `norm_mse = mean ‖â − b̂‖²` with unit rows lies in [0, 4]: 0 for equal
/// directions, 4 for opposite ones, 2 for orthogonal ones and for a zero
/// row (whose normalised form is 0).
#[test]
fn norm_mse_stays_in_zero_four() {
    tch::manual_seed(3);
    for scale in [1e-3, 1.0, 1e3] {
        let a = Tensor::randn([256, 16], OPTS) * scale;
        let b = Tensor::randn([256, 16], OPTS);
        let v = norm_mse(&a, &b).double_value(&[]);
        assert!((0.0..=4.0).contains(&v), "random rows, scale {scale}: {v}");
        assert!(norm_mse(&a, &(&a * 5.0)).double_value(&[]).abs() < 1e-6);
        assert!((norm_mse(&a, &(-&a)).double_value(&[]) - 4.0).abs() < 1e-6);
    }
    let e = Tensor::eye(4, OPTS);
    assert!((norm_mse(&e, &e.roll([1], [0])).double_value(&[]) - 2.0).abs() < 1e-6);
    assert!((norm_mse(&e.zeros_like(), &e).double_value(&[]) - 2.0).abs() < 1e-6);
}

/// Perfect positives (both views equal) and orthogonal negatives (one-hot
/// rows): every row's logits are `1/τ` for the positive and 0 for its
/// `2(m − 1)` negatives, so `ℓ = log(1 + 2(m − 1) e^{−1/τ})`, which falls
/// to the lower bound 0 as τ → 0. f32 tolerance 1e-5.
#[test]
fn simclr_reaches_its_lower_bound_with_perfect_positives() {
    let m = 8;
    let z = Tensor::eye(m, OPTS)
        .unsqueeze(0)
        .expand([2, m, m], false)
        .contiguous();
    let mut previous = f64::INFINITY;
    for tau in [1.0, 0.5, 0.2, 0.1, 0.05] {
        let v = value(nt_xent(&z, tau, false));
        let expected = (1.0 + 2.0 * (m - 1) as f64 * (-1.0 / tau).exp()).ln();
        assert!((v - expected).abs() < 1e-5, "tau {tau}: {v} vs {expected}");
        assert!(v < previous, "the loss falls as tau falls");
        previous = v;
    }
    assert!(
        previous < 1e-6,
        "tau 0.05: {previous} is not near the bound 0"
    );
    // Any other configuration of the same rows does worse.
    tch::manual_seed(4);
    let noisy = &z + Tensor::randn([2, m, m], OPTS) * 0.3;
    assert!(value(nt_xent(&noisy, 0.5, false)) > value(nt_xent(&z, 0.5, false)));
}

/// Barlow Twins divides the cross-correlation by the embedding size `d`,
/// as the release does (`c.div_(len(z1[0]))` in
/// `base/methods/barlow_twins.py`), not by the batch size `m`. Identical
/// views with centred, orthogonal columns make `BNᵀBN = f·m·I` exactly
/// (`f = v/(v + eps)` the batch norm's eps factor, `v = 1/m` the biased
/// variance of a unit column): `c = f·(m/d)·I` and the loss is
/// `d·(1 − f·m/d)²` with no off-diagonal part. Dividing by `m` would give
/// `d·(1 − f)² ≈ 7e-6` instead of 144 at `m = 64`, `d = 16`; at `m = d + 1`
/// the loss is small under either divisor (0.06 here).
#[test]
fn barlow_twins_divides_the_correlation_by_the_embedding_size() {
    let opts = (Kind::Double, Device::Cpu);
    for (m, d) in [(64i64, 16i64), (17, 16), (40, 8)] {
        tch::manual_seed(5);
        let a = Tensor::randn([m, d], opts);
        let a = &a - a.mean_dim(0, true, None);
        // Orthonormal columns spanning a subspace of centred vectors: still centred.
        let (q, _) = Tensor::linalg_qr(&a, "reduced");
        let z = q.unsqueeze(0).expand([2, m, d], false).contiguous();
        let loss = value(barlow_twins_loss(&z, 0.008));
        let v = 1.0 / m as f64;
        let f = v / (v + 1e-5);
        let want = d as f64 * (1.0 - f * m as f64 / d as f64).powi(2);
        assert!(
            (loss - want).abs() <= 1e-9 * want.max(1.0),
            "m {m}, d {d}: loss {loss}, expected d·(1 − f·m/d)² = {want}"
        );
    }
}

/// The release's schedule (`BYOL.step` in `base/methods/byol.py`, called
/// with `epoch / cfg.epochs` after every step by `base/train.py`): one τ
/// per 0-based epoch, `1 − (1 − τ₀)(cos(π·e/E) + 1)/2`. The values for
/// E = 4 are written out (cos(π/4) = 0.70710678…): τ₀, 0.99146447,
/// 0.995, 0.99853553; the last epoch stays below 1.
#[test]
fn byol_tau_follows_the_release_cosine_schedule_in_epochs() {
    let want = [
        0.99,
        0.991_464_466_094_067_3,
        0.995,
        0.998_535_533_905_932_7,
    ];
    for (epoch, w) in want.iter().enumerate() {
        let tau = byol_tau(epoch, 4, 0.99);
        assert!((tau - w).abs() < 1e-12, "epoch {epoch}: {tau} vs {w}");
    }
    // 100 epochs: τ₀ at the first, (1 + τ₀)/2 halfway, < 1 at the last.
    assert_eq!(byol_tau(0, 100, 0.99), 0.99);
    assert!((byol_tau(50, 100, 0.99) - 0.995).abs() < 1e-12);
    let last = byol_tau(99, 100, 0.99);
    assert!(
        last < 1.0 && (last - (1.0 - 0.005 * (1.0 - (PI / 100.0).cos()))).abs() < 1e-15,
        "{last}"
    );
    // Past the end (a caller counting further) the target stays frozen.
    assert_eq!(byol_tau(100, 100, 0.99), 1.0);
}

/// `t ← τ t + (1 − τ) o`, in place, checked entry by entry.
#[test]
fn ema_update_moves_the_target_towards_the_online_network() {
    let target = vec![
        Tensor::from_slice(&[1.0f32, 2.0]),
        Tensor::ones([2, 2], OPTS),
    ];
    let online = vec![
        Tensor::from_slice(&[3.0f32, -2.0]),
        Tensor::zeros([2, 2], OPTS),
    ];
    ema_update(&target, &online, 0.75).expect("ema");
    let t0 = Vec::<f32>::try_from(&target[0]).expect("t0");
    assert_eq!(t0, vec![1.5, 1.0]);
    assert_eq!(target[1].sum(None).double_value(&[]), 3.0);
    let err = ema_update(&target, &online[..1], 0.5).expect_err("length mismatch");
    assert!(
        err.to_string().contains("2 target tensors for 1 online"),
        "{err}"
    );
}

/// The codes' rows sum to 1 (the last step normalises them) and the
/// columns approach equipartition `m/K` as the iterations grow (with
/// ε = 0.05 and these scores: max deviation 2.3 after 3 iterations, well
/// under 0.2 after 200, measured with the reference code).
#[test]
fn sinkhorn_knopp_equipartitions() {
    tch::manual_seed(6);
    let scores = Tensor::randn([32, 8], OPTS).tanh();
    let deviation = |iterations| {
        let q = sinkhorn_knopp(&scores, 0.05, iterations);
        assert!(!q.requires_grad());
        let rows = q.sum_dim_intlist(1, false, None);
        assert!(
            (rows - 1.0).abs().max().double_value(&[]) < 1e-5,
            "rows sum to 1"
        );
        (q.sum_dim_intlist(0, false, None) - 4.0)
            .abs()
            .max()
            .double_value(&[])
    };
    let (few, many) = (deviation(3), deviation(200));
    assert!(
        many < 0.2 && many < few,
        "column deviation from m/K: {few} after 3, {many} after 200"
    );
}
