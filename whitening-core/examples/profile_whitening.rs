//! Quick timing of the whitening stages (dev tool): median ms of forward
//! and forward+backward at the peer's CW-RGP 4 shape.
use rand::SeedableRng;
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use whitening_core::{whiten_sub_batches, WhiteningConfig};

fn median_ms(mut f: impl FnMut(), reps: usize) -> f64 {
    f();
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn main() {
    println!("threads {}", tch::get_num_threads());
    let h = Tensor::randn([4, 256, 512], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let r = Tensor::randn([4, 256, 512], (Kind::Float, Device::Cpu));
    let cfg = WhiteningConfig::cw_rgp(4);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let fwd = median_ms(
        || {
            let _ = tch::no_grad(|| whiten_sub_batches(&h, 64, &cfg, &mut rng).unwrap());
        },
        20,
    );
    let both = median_ms(
        || {
            (whiten_sub_batches(&h, 64, &cfg, &mut rng).unwrap() * &r)
                .sum(Kind::Float)
                .backward();
        },
        20,
    );
    let cov = Tensor::randn([64, 128, 64], (Kind::Float, Device::Cpu));
    let cov = cov.transpose(1, 2).matmul(&cov) / 127.0;
    let eigh = median_ms(
        || {
            let _ = cov.linalg_eigh("L");
        },
        20,
    );
    println!(
        "CW-RGP 4 whitening: fwd {fwd:.2} ms, fwd+bwd {both:.2} ms; eigh of 64x64x64 {eigh:.2} ms"
    );
}
