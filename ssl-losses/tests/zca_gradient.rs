//! The closed-form gradient of the ZCA whitening loss against central
//! finite differences, and its behaviour on a degenerate spectrum, where
//! autograd through `eigh` divides by zero eigenvalue gaps.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ssl_losses::{CpuThreads, WhiteningLoss};
use tch::{Device, Kind, Tensor};
use whitening_core::{WhiteningAxis, WhiteningConfig, WhiteningKind};

const OPTS: (Kind, Device) = (Kind::Double, Device::Cpu);

fn loss_at(loss: &WhiteningLoss, h: &Tensor, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    loss.loss(h, 0, &mut rng).expect("loss")
}

/// `(L(h + εv) − L(h − εv)) / 2ε` against `⟨∂L/∂h, v⟩` for random
/// directions, in f64 with ε = 1e-6: the truncation error is O(ε²·L''') ≈
/// 1e-12 and the rounding error O(1e-16/ε) ≈ 1e-10, so 1e-7 relative is
/// a safe bound (measured about 1e-10).
#[test]
fn closed_form_gradient_matches_finite_differences() {
    let bw = WhiteningConfig {
        random_partition: true,
        ..WhiteningConfig::new(WhiteningAxis::Batch, WhiteningKind::Zca).with_groups(2)
    };
    let cases = [
        (
            "cw-rgp, normalised",
            WhiteningLoss::whitened(WhiteningConfig::cw_rgp(2), 8),
            [3, 16, 32],
        ),
        (
            "cw-rgp, plain mse, w_iter 2",
            WhiteningLoss::whitened(WhiteningConfig::cw_rgp(2), 8)
                .with_normalized(false)
                .with_w_iter(2),
            [2, 16, 32],
        ),
        (
            "bw zca, random groups",
            WhiteningLoss::whitened(bw, 16),
            [2, 32, 8],
        ),
    ];
    for (name, loss, shape) in cases {
        tch::manual_seed(1);
        let h = Tensor::randn(shape, OPTS).set_requires_grad(true);
        loss_at(&loss, &h, 5).backward();
        let g = h.grad();
        for k in 0..3 {
            tch::manual_seed(10 + k);
            let v = Tensor::randn(shape, OPTS);
            let eps = 1e-6;
            let (plus, minus) = tch::no_grad(|| {
                (
                    loss_at(&loss, &(&h + &v * eps), 5),
                    loss_at(&loss, &(&h - &v * eps), 5),
                )
            });
            let fd = (plus.double_value(&[]) - minus.double_value(&[])) / (2.0 * eps);
            let analytic = (&g * &v).sum(None).double_value(&[]);
            assert!(
                (fd - analytic).abs() <= 1e-7 * analytic.abs().max(1e-3),
                "{name}, direction {k}: finite difference {fd} vs closed form {analytic}"
            );
        }
    }
}

/// A sub-batch whose channel-centred rows are orthogonal with equal norms
/// (rows 1..=8 of a 32×32 Sylvester–Hadamard matrix) has `Σ ∝ I`: all
/// eigenvalues equal. The closed form needs no eigenvalue gaps, so its
/// gradient is finite; autograd through `eigh` divides by the gaps.
#[test]
fn gradient_is_finite_on_a_degenerate_spectrum() {
    let mut hadamard = Tensor::ones([1, 1], OPTS);
    while hadamard.size()[0] < 32 {
        hadamard = Tensor::cat(
            &[
                Tensor::cat(&[&hadamard, &hadamard], 1),
                Tensor::cat(&[&hadamard, &(-&hadamard)], 1),
            ],
            0,
        );
    }
    let view0 = hadamard.narrow(0, 1, 8).unsqueeze(0);
    tch::manual_seed(2);
    let view1 = Tensor::randn([1, 8, 32], OPTS);
    let h = Tensor::cat(&[view0, view1], 0).set_requires_grad(true);
    let cw = WhiteningConfig::new(WhiteningAxis::Channel, WhiteningKind::Zca);
    loss_at(&WhiteningLoss::whitened(cw.clone(), 8), &h, 0).backward();
    let g = h.grad();
    assert!(
        g.isfinite().all().int64_value(&[]) == 1,
        "closed-form gradient is not finite"
    );
    assert!(g.abs().max().double_value(&[]) > 0.0);

    // The same loss through autograd (whitening-core's differentiable `whiten`).
    let h2 = h.detach().set_requires_grad(true);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let z = whitening_core::whiten(&h2, &cw, &mut rng).expect("whiten");
    ssl_losses::pairwise_view_loss(&z, true).backward();
    let autograd_finite = h2.grad().isfinite().all().int64_value(&[]) == 1;
    assert!(
        !autograd_finite,
        "autograd through eigh stayed finite here: the case is not degenerate"
    );
}

/// With `CpuThreads::SingleWhileRunning` the CPU path runs single-threaded
/// inside (see `SingleThreadedScope`) and must hand the caller's thread
/// count back, also on an error.
#[test]
fn the_callers_thread_count_is_restored() {
    tch::set_num_threads(2);
    tch::manual_seed(3);
    let h = Tensor::randn([2, 32, 64], OPTS).set_requires_grad(true);
    let loss = WhiteningLoss::whitened(WhiteningConfig::cw_rgp(2), 16)
        .with_cpu_threads(CpuThreads::SingleWhileRunning);
    loss_at(&loss, &h, 1).backward();
    assert_eq!(tch::get_num_threads(), 2);
    // Rank-deficient (w_size 64 > d/g = 32) is rejected inside the scope.
    let bad = WhiteningLoss::whitened(WhiteningConfig::cw_rgp(2), 64)
        .with_cpu_threads(CpuThreads::SingleWhileRunning);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let h = Tensor::randn([2, 64, 64], OPTS);
    assert!(bad.loss(&h, 0, &mut rng).is_err());
    assert_eq!(tch::get_num_threads(), 2);
}

/// On the CPU in `f32` the loss decomposes its covariances with
/// whitening-core's own eigensolver (`symmetric_eigen`), in `f64` with
/// libtorch's LAPACK. The same draws in both precisions must give the
/// same loss and gradient to `f32` accuracy: the loss to 1e-5 relative,
/// the gradient to 1e-3 of its largest entry (the covariances here have
/// condition numbers of ~10–100, so ε_f32·κ ≈ 1e-5 per matrix, amplified
/// by the products of the backward). Shapes where the matrices do not
/// split evenly over the worker threads (3 sub-batch matrices) included.
#[test]
fn f32_with_the_own_eigensolver_matches_f64_with_lapack() {
    let bw = WhiteningConfig {
        random_partition: true,
        ..WhiteningConfig::new(WhiteningAxis::Batch, WhiteningKind::Zca).with_groups(2)
    };
    let cases = [
        (
            "cw-rgp 4 views",
            WhiteningLoss::whitened(WhiteningConfig::cw_rgp(4), 16),
            [4, 64, 256],
        ),
        (
            "cw-rgp 3 matrices",
            WhiteningLoss::whitened(WhiteningConfig::cw_rgp(2), 32),
            [3, 32, 128],
        ),
        (
            "cw-gp plain mse",
            WhiteningLoss::whitened(
                WhiteningConfig::new(WhiteningAxis::Channel, WhiteningKind::Zca).with_groups(2),
                16,
            )
            .with_normalized(false),
            [2, 64, 128],
        ),
        (
            "bw zca, random groups",
            WhiteningLoss::whitened(bw, 64),
            [2, 128, 32],
        ),
    ];
    for (name, loss, shape) in cases {
        tch::manual_seed(4);
        let h64 = Tensor::randn(shape, OPTS).set_requires_grad(true);
        let h32 = h64.detach().to_kind(Kind::Float).set_requires_grad(true);
        let l64 = loss_at(&loss, &h64, 9);
        let l32 = loss_at(&loss, &h32, 9);
        l64.backward();
        l32.backward();
        let (v64, v32) = (l64.double_value(&[]), l32.double_value(&[]));
        assert!(
            (v64 - v32).abs() <= 1e-5 * v64.abs(),
            "{name}: loss f32 {v32} vs f64 {v64}"
        );
        let (g64, g32) = (h64.grad(), h32.grad().to_kind(Kind::Double));
        let scale = g64.abs().max().double_value(&[]);
        let diff = (&g64 - &g32).abs().max().double_value(&[]);
        assert!(
            diff <= 1e-3 * scale,
            "{name}: gradient differs by {diff:e} (largest entry {scale:e})"
        );
    }
}
