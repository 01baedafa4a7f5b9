//! `cargo xtask check-downstream`'s program: a user's project that depends
//! on the library crates by path, with its own lock file. A whitening, a
//! loss and training steps through ssl-train; started without
//! `LD_LIBRARY_PATH`. Argument: a directory for the run.

use rand::{Rng, SeedableRng};
use ssl_data::{DatasetKind, InMemoryDataset, Pipeline, RgbImage, Sample};
use ssl_losses::{MethodName, WhiteningLoss, WhiteningParams};
use ssl_train::{Config, Override, Splits, Trainer};
use tch::{Device, Kind, Tensor};
use whitening_core::{whiten_sub_batches, WhiteningConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: downstream-check RUN_DIR")?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let cpu = (Kind::Float, Device::Cpu);

    // A whitening: CW-RGP's (channel ZCA, g = 4), sub-batches of 64.
    tch::manual_seed(0);
    let h = Tensor::randn([2, 128, 512], cpu);
    let z = whiten_sub_batches(&h, 64, &WhiteningConfig::cw_rgp(4), &mut rng)?;
    assert_eq!(z.size(), [2, 128, 512]);
    let ok = f64::try_from(z.isfinite().all())? == 1.0;
    assert!(ok, "the whitening is not finite");

    // A loss without the trainer: CW-RGP 4 on those embeddings.
    assert_eq!(MethodName::parse("cw-rgp")?, MethodName::CwRgp);
    let params = WhiteningParams::default();
    let loss = WhiteningLoss::from_params(WhiteningConfig::cw_rgp(params.groups), &params)
        .loss(&h, 0, &mut rng)?
        .double_value(&[]);
    assert!(loss.is_finite() && loss > 0.0, "loss {loss}");

    // Training steps through ssl-train: a thin ResNet-18 on 64 noise images.
    let images = (0..64)
        .map(|i| {
            let pixels = (0..32 * 32 * 3).map(|_| rng.random()).collect();
            let image = RgbImage::from_raw(32, 32, pixels)?;
            Ok(Sample {
                image,
                label: Some(i % 4),
            })
        })
        .collect::<Result<Vec<_>, ssl_data::DataError>>()?;
    let set = |k: &str, v: &str| Override::new(k, v);
    let cfg = Config::resolve(
        None,
        &[
            set("run.out_dir", &out),
            set("run.name", "downstream"),
            set("run.device", "cpu"),
            set("method.name", "cw-rgp"),
            set("method.w_size", "32"),
            set("method.groups", "2"),
            set("model.width", "0.125"),
            set("model.emb", "128"),
            set("model.head_size", "128"),
            set("data.batch_size", "64"),
            set("data.workers", "1"),
            set("optim.epochs", "1"),
            set("optim.warmup_iters", "2"),
            set("optim.drop_epochs", "[]"),
        ],
    )?;
    let splits = Splits::custom(
        InMemoryDataset::new(images, 4)?,
        None,
        Pipeline::ssl_small(DatasetKind::Cifar10),
        Pipeline::eval(DatasetKind::Cifar10),
    );
    let mut trainer = Trainer::builder(cfg).data(splits).build()?;
    let first = trainer.step()?.ok_or("the epoch had no batch")?;
    let views = [
        Tensor::randn([64, 3, 32, 32], cpu),
        Tensor::randn([64, 3, 32, 32], cpu),
    ];
    let second = trainer.step_on(&views)?;
    assert!(first.loss.is_finite() && second.loss.is_finite());
    assert_eq!(second.step, 2);
    println!(
        "downstream | whitening {:?} | loss {loss:.4} | steps {:.4}, {:.4} | cuda {}",
        z.size(),
        first.loss,
        second.loss,
        tch::Cuda::is_available()
    );
    Ok(())
}
