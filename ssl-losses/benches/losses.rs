//! Criterion benches of whole-loss forward + backward on the peer
//! baseline's three cases (`xtask/peer/torch_peer.py loss`), plus
//! the other losses of Table 1 at the same batch. `examples/bench_losses.rs`
//! prints the same three cases in the peer's line format.

use criterion::{criterion_group, criterion_main, Criterion};
use rand::SeedableRng;
use ssl_losses::{
    barlow_twins_loss, nt_xent, vicreg_loss, CpuThreads, VicRegWeights, WhiteningLoss,
};
use tch::{Device, Kind, Tensor};
use whitening_core::WhiteningConfig;

fn embeddings(views: i64, d: i64) -> Tensor {
    Tensor::randn([views, 256, d], (Kind::Float, Device::Cpu)).set_requires_grad(true)
}

fn whitening_losses(c: &mut Criterion) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let cases = [
        (
            "CW-RGP 4 (4 views, d 512, w 64, g 4)",
            4,
            512,
            WhiteningLoss::whitened(WhiteningConfig::cw_rgp(4), 64)
                .with_cpu_threads(CpuThreads::SingleWhileRunning),
        ),
        (
            "CW-RGP 2 (2 views, d 512, w 64, g 4)",
            2,
            512,
            WhiteningLoss::whitened(WhiteningConfig::cw_rgp(4), 64)
                .with_cpu_threads(CpuThreads::SingleWhileRunning),
        ),
        (
            "W-MSE 4 (4 views, d 64, w 128)",
            4,
            64,
            WhiteningLoss::whitened(WhiteningConfig::w_mse(), 128)
                .with_cpu_threads(CpuThreads::SingleWhileRunning),
        ),
    ];
    for (name, views, d, loss) in cases {
        let h = embeddings(views, d);
        c.bench_function(name, |b| {
            b.iter(|| {
                loss.loss(&h, 0, &mut rng)
                    .expect("whitening loss")
                    .backward()
            })
        });
    }
}

fn other_losses(c: &mut Criterion) {
    let z = embeddings(2, 512);
    c.bench_function("SimCLR (2 views, d 512)", |b| {
        b.iter(|| nt_xent(&z, 0.5, true).expect("nt-xent").backward())
    });
    c.bench_function("Barlow Twins (2 views, d 512)", |b| {
        b.iter(|| {
            barlow_twins_loss(&z, 0.008)
                .expect("barlow twins")
                .backward()
        })
    });
    c.bench_function("VICReg (2 views, d 512)", |b| {
        b.iter(|| {
            vicreg_loss(&z, &VicRegWeights::default())
                .expect("vicreg")
                .backward()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = whitening_losses, other_losses
}
criterion_main!(benches);
