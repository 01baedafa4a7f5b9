//! The networks each method trains run as the release runs them: the head
//! per view for Barlow Twins, VICReg, Zero-CL, BYOL and SimSiam, on the
//! views concatenated for the whitening methods and SimCLR; a learnable
//! `BatchNorm1d(emb)` after the head for SimCLR (all views) and Barlow
//! Twins (each view), trained like every other parameter.

use rand::SeedableRng;
use ssl_train::{method_loss, Config, Networks, Override};
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor};

fn config(method: &str) -> Config {
    // Whitening constraints at d = 32 (the config's batch only validates;
    // the views below are 16 images).
    let extra: &[(&str, &str)] = match method {
        "cw-rgp" => &[("method.w_size", "8"), ("method.groups", "4")],
        "w-mse" => &[("method.w_size", "64"), ("data.batch_size", "64")],
        _ => &[],
    };
    let o: Vec<Override> = [
        ("method.name", method),
        ("model.width", "0.125"),
        ("model.emb", "32"),
        ("model.head_size", "64"),
        ("data.batch_size", "16"),
        ("run.channels_last", "false"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| Override::new(*k, *v))
    .collect();
    Config::resolve(None, &o).unwrap()
}

fn views() -> Vec<Tensor> {
    tch::manual_seed(11);
    (0..2)
        .map(|_| Tensor::randn([16, 3, 32, 32], (Kind::Float, Device::Cpu)))
        .collect()
}

fn close(a: &Tensor, b: &Tensor) -> bool {
    a.allclose(b, 1e-5, 1e-5, false)
}

/// The head (and `bn_last`) applied as `per_view` says, by hand.
fn by_hand(nets: &Networks, views: &[Tensor], per_view: bool) -> Vec<Tensor> {
    let h: Vec<Tensor> = views
        .iter()
        .map(|x| nets.encoder.forward_t(x, true))
        .collect();
    if per_view {
        h.iter()
            .map(|hi| {
                let z = nets.head.forward_t(hi, true);
                match &nets.bn_last {
                    Some(bn) => bn.forward_t(&z, true),
                    None => z,
                }
            })
            .collect()
    } else {
        let z = nets.head.forward_t(&Tensor::cat(&h, 0), true);
        let z = match &nets.bn_last {
            Some(bn) => bn.forward_t(&z, true),
            None => z,
        };
        z.chunk(views.len() as i64, 0)
    }
}

#[test]
fn each_method_runs_its_head_as_the_release_does() {
    let views = views();
    for (method, per_view, bn_last) in [
        ("barlow-twins", true, true),
        ("vicreg", true, false),
        ("zero-cl", true, false),
        ("byol", true, false),
        ("simsiam", true, false),
        ("simclr", false, true),
        ("cw-rgp", false, false),
        ("w-mse", false, false),
    ] {
        tch::manual_seed(3);
        let nets = Networks::new(&config(method), Device::Cpu).unwrap();
        assert_eq!(nets.plan.head_per_view, per_view, "{method}");
        assert_eq!(nets.bn_last.is_some(), bn_last, "{method}");
        let out = nets.forward(&views, true);
        let want = by_hand(&nets, &views, per_view);
        let other = by_hand(&nets, &views, !per_view);
        for (i, w) in want.iter().enumerate() {
            let got = out.embeddings.get(i as i64);
            assert!(
                close(&got, w),
                "{method}: view {i} differs from the release's order"
            );
            // The other order gives other batch statistics: the test can tell.
            assert!(
                !close(&got, &other[i]),
                "{method}: the orders cannot be told apart"
            );
        }
    }
}

#[test]
fn bn_last_is_learnable_and_trained() {
    let views = views();
    for method in ["barlow-twins", "simclr"] {
        tch::manual_seed(5);
        let nets = Networks::new(&config(method), Device::Cpu).unwrap();
        let vars = nets.vs.variables();
        for name in ["bn_last.weight", "bn_last.bias"] {
            let t = vars
                .get(name)
                .unwrap_or_else(|| panic!("{method}: no {name}"));
            assert!(t.requires_grad(), "{method}: {name} is not trainable");
        }
        let out = nets.forward(&views, true);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let cfg = config(method);
        let loss = method_loss(
            &cfg.method,
            &nets,
            &out,
            0,
            &mut rng,
            ssl_losses::CpuThreads::AsSet,
        )
        .unwrap();
        loss.backward();
        let g = vars["bn_last.weight"].grad();
        assert!(g.defined() && g.abs().sum(Kind::Double).double_value(&[]) > 0.0);
    }
}

#[test]
fn barlow_twins_at_initialisation_equals_the_standardising_loss() {
    // γ = 1, β = 0: the learnable BatchNorm is the loss's own standardisation,
    // so the two paths agree at the start; they part as γ and β train.
    let views = views();
    tch::manual_seed(7);
    let cfg = config("barlow-twins");
    let nets = Networks::new(&cfg, Device::Cpu).unwrap();
    let out = nets.forward(&views, true);
    let raw: Vec<Tensor> = views
        .iter()
        .map(|x| nets.head.forward_t(&nets.encoder.forward_t(x, true), true))
        .collect();
    let raw = Tensor::stack(&raw, 0);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let ours = method_loss(
        &cfg.method,
        &nets,
        &out,
        0,
        &mut rng,
        ssl_losses::CpuThreads::AsSet,
    )
    .unwrap();
    let plain = ssl_losses::barlow_twins_loss(&raw, 0.008).unwrap();
    assert!(
        (ours.double_value(&[]) - plain.double_value(&[])).abs()
            < 1e-4 * plain.double_value(&[]).abs(),
        "{} vs {}",
        ours.double_value(&[]),
        plain.double_value(&[])
    );
}
