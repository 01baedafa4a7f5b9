//! Criterion bench of the whitening alone (forward + backward) at the
//! three shapes of the peer baseline (`xtask/peer/torch_peer.py loss`):
//! CW, 4 random groups, w_size 64 on `[4, 256, 512]` and `[2, 256, 512]`;
//! BW Cholesky, w_size 128 on `[4, 256, 64]`. Then the eigensolver alone
//! against libtorch's (`bench_eigh`), and the closed-form ZCA forward +
//! backward the losses run (`bench_closed_form`).

use criterion::{criterion_group, Criterion};
use rand::SeedableRng;
use tch::{Device, Kind, Tensor};
use whitening_core::{whiten_sub_batches, WhiteningConfig};

fn bench(c: &mut Criterion) {
    tch::manual_seed(0);
    let cases = [
        (
            "CW-RGP g4 w64 [4,256,512]",
            4,
            512,
            64,
            WhiteningConfig::cw_rgp(4),
        ),
        (
            "CW-RGP g4 w64 [2,256,512]",
            2,
            512,
            64,
            WhiteningConfig::cw_rgp(4),
        ),
        (
            "BW Cholesky w128 [4,256,64]",
            4,
            64,
            128,
            WhiteningConfig::w_mse(),
        ),
    ];
    let mut group = c.benchmark_group("whitening fwd+bwd");
    group.sample_size(20);
    for (name, views, d, w_size, cfg) in cases {
        let h = Tensor::randn([views, 256, d], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let r = Tensor::randn([views, 256, d], (Kind::Float, Device::Cpu));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        group.bench_function(name, |b| {
            b.iter(|| {
                let z = whiten_sub_batches(&h, w_size, &cfg, &mut rng).expect("whitening");
                (z * &r).sum(Kind::Float).backward();
            })
        });
    }
    group.finish();
}

/// The decomposition the ZCA loss runs: 64 covariances of 64 variables
/// (CW-RGP 4's `views · m/w · g`), whitening-core's eigensolver against
/// libtorch's LAPACK `eigh`, both on one thread.
fn bench_eigh(c: &mut Criterion) {
    tch::set_num_threads(1);
    let a = Tensor::randn([64, 128, 64], (Kind::Float, Device::Cpu));
    let cov = a.transpose(1, 2).matmul(&a) / 127.0;
    let mut group = c.benchmark_group("eigh 64 x [64, 64] f32, one thread");
    group.sample_size(20);
    group.bench_function("whitening-core symmetric_eigen", |b| {
        b.iter(|| whitening_core::symmetric_eigen::eigh(&cov).expect("eigh"))
    });
    group.bench_function("libtorch linalg_eigh", |b| b.iter(|| cov.linalg_eigh("L")));
    group.finish();
}

/// The whitening the ZCA losses run: closed-form forward + backward
/// (`zca_closed_form`) of the grouped, centred matrices of the peer's two
/// CW cases — CW-RGP 4 `[4, 256, 512]` and CW-RGP 2 `[2, 256, 512]` with
/// `w_size` 64 and 4 groups give 64 and 32 matrices of 128 channels × 64
/// examples — on one thread and split into one chunk per core (libtorch
/// single-threaded in each, as the loss does).
fn bench_closed_form(c: &mut Criterion) {
    tch::set_num_threads(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    let run = |a: Tensor, g: Tensor| {
        let f = whitening_core::zca_whiten_centred(a, 127.0, 0.0).expect("whitening");
        f.backward(&g)
    };
    let mut group = c.benchmark_group("ZCA closed form fwd+bwd");
    group.sample_size(20);
    for (case, b) in [("CW-RGP 4 [4,256,512]", 64), ("CW-RGP 2 [2,256,512]", 32)] {
        let x = Tensor::randn([b, 128, 64], (Kind::Float, Device::Cpu));
        let a = &x - x.mean_dim(&[1i64][..], true, None);
        let g = Tensor::randn([b, 128, 64], (Kind::Float, Device::Cpu));
        group.bench_function(format!("{case}: {b} x [128, 64], one thread"), |bch| {
            bch.iter(|| run(a.shallow_clone(), g.shallow_clone()))
        });
        group.bench_function(format!("{case}: {b} x [128, 64], {cores} threads"), |bch| {
            bch.iter(|| {
                let jobs: Vec<(Tensor, Tensor)> = a
                    .chunk(cores, 0)
                    .into_iter()
                    .zip(g.chunk(cores, 0))
                    .collect();
                std::thread::scope(|s| {
                    let handles: Vec<_> = jobs
                        .into_iter()
                        .map(|(a, g)| s.spawn(move || run(a, g)))
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("worker"))
                        .collect::<Vec<_>>()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench, bench_eigh, bench_closed_form);
/// `criterion_main!` with the process settings of the project's binaries
/// first (`whitening_core::process`: OpenMP waits passively, glibc keeps
/// freed memory), so the bench measures what `ssl` runs.
fn main() {
    whitening_core::process::tune_process();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
