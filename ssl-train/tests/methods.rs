//! The uniform interface: selection by name, paper defaults, serde, extra
//! networks, and the dispatch to the right loss.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ssl_train::methods::w_mse;
use ssl_train::{Head, Method, MethodOutputs, Predictor, WhiteningParams, METHOD_NAMES};
use tch::{Device, Kind, Tensor};

#[test]
fn every_name_round_trips() {
    for name in METHOD_NAMES {
        let m = Method::from_name(name).expect(name);
        assert_eq!(m.name(), name);
        let text = toml::to_string(&m).expect("serialise");
        let back: Method = toml::from_str(&text).expect("deserialise");
        assert_eq!(back, m, "{name} via TOML:\n{text}");
    }
}

#[test]
fn unknown_name_lists_the_valid_ones() {
    let err = Method::from_name("cwrgp").expect_err("unknown");
    let msg = err.to_string();
    assert!(
        msg.contains("`cwrgp`") && msg.contains("cw-rgp, cw, cw-gp"),
        "{msg}"
    );
}

#[test]
fn config_keys_override_paper_defaults() {
    let m: Method = toml::from_str("name = 'cw-rgp'\ngroups = 2\nw_iter = 4").expect("toml");
    assert_eq!(
        m,
        Method::CwRgp(WhiteningParams {
            groups: 2,
            w_iter: 4,
            ..WhiteningParams::default()
        })
    );
    // The paper's CIFAR CW-RGP defaults (docs/reference.md §6.4).
    let Method::CwRgp(p) = Method::from_name("cw-rgp").expect("cw-rgp") else {
        panic!()
    };
    assert_eq!((p.w_size, p.groups, p.w_iter, p.norm), (64, 4, 1, true));
    let err = toml::from_str::<Method>("name = 'vicreg'\nsimm = 3.0").expect_err("typo");
    assert!(err.to_string().contains("simm"), "{err}");
}

#[test]
fn extra_networks_per_method() {
    let nets = |n| Method::from_name(n).expect(n).networks();
    assert_eq!(nets("byol").predictor, Some(Predictor::Byol));
    assert_eq!(nets("byol").ema_target.map(|e| e.tau0), Some(0.99));
    assert_eq!(
        nets("simsiam").predictor,
        Some(Predictor::Simsiam { hidden: 512 })
    );
    assert!(nets("simsiam").ema_target.is_none());
    assert_eq!(nets("simsiam").head, Head::Simsiam);
    assert_eq!(nets("swav").prototypes, Some(3000));
    for n in [
        "cw-rgp",
        "w-mse",
        "simclr",
        "vicreg",
        "barlow-twins",
        "zero-cl",
        "plain",
    ] {
        let e = nets(n);
        assert!(
            e.predictor.is_none() && e.ema_target.is_none() && e.prototypes.is_none(),
            "{n}"
        );
    }
}

#[test]
fn every_method_computes_a_finite_loss_from_its_outputs() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let opts = (Kind::Float, Device::Cpu);
    tch::manual_seed(0);
    // The paper's d = 512: d/g = 128 > w_size = 64 for CW-RGP 4.
    let z = Tensor::randn([2, 256, 512], opts).set_requires_grad(true);
    let p = Tensor::randn([2, 256, 512], opts);
    let c = Tensor::randn([3000, 512], opts);
    for name in METHOD_NAMES {
        let mut method = Method::from_name(name).expect(name);
        if let Method::WMse(w) = &mut method {
            w.groups = 8; // BW: 64 channels per group < w_size 128
        }
        let out = MethodOutputs {
            embeddings: &z,
            predictions: Some(&p),
            target_embeddings: Some(&p),
            prototypes: Some(&c),
        };
        let loss = method.loss(&out, 0, &mut rng).expect(name);
        assert!(loss.double_value(&[]).is_finite(), "{name}");
        if method.networks().predictor.is_some() {
            let err = method
                .loss(&MethodOutputs::embeddings(&z), 0, &mut rng)
                .expect_err(name);
            assert!(err.to_string().contains("needs `"), "{err}");
        }
    }
}

#[test]
fn covariance_term_stops_at_cov_stop() {
    let mut m = Method::from_name("cw-rgp").expect("cw-rgp");
    if let Method::CwRgp(p) = &mut m {
        p.cov_weight = 0.01;
        p.cov_stop = 5;
    }
    tch::manual_seed(1);
    let z = Tensor::randn([2, 128, 512], (Kind::Float, Device::Cpu));
    let at = |epoch| {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        m.loss(&MethodOutputs::embeddings(&z), epoch, &mut rng)
            .expect("loss")
            .double_value(&[])
    };
    assert!(
        at(4) > at(5) + 1e-4,
        "the term is on before epoch 5: {} vs {}",
        at(4),
        at(5)
    );
    assert_eq!(at(5), at(6));
}

#[test]
fn two_view_losses_reject_four_views() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let z = Tensor::randn([4, 32, 8], (Kind::Float, Device::Cpu));
    for name in ["barlow-twins", "vicreg", "zero-cl"] {
        let m = Method::from_name(name).expect(name);
        assert_eq!(m.fixed_views(), Some(2));
        let err = m
            .loss(&MethodOutputs::embeddings(&z), 0, &mut rng)
            .expect_err(name);
        assert!(
            err.to_string().contains("exactly 2 views, got 4"),
            "{name}: {err}"
        );
    }
}

/// A config naming only the method means the paper's defaults for it, the
/// same as `Method::from_name`, for every method, and a key given next to
/// the name overrides only that key (CW and W-MSE default to other groups
/// and sub-batch sizes than CW-RGP, which a plain `#[serde(default)]` lost).
#[test]
fn name_alone_means_the_paper_defaults() {
    for name in METHOD_NAMES {
        let m: Method = toml::from_str(&format!("name = '{name}'")).expect(name);
        assert_eq!(m, Method::from_name(name).expect(name), "{name}");
    }
    let m: Method = toml::from_str("name = 'w-mse'\nw_iter = 4").expect("toml");
    assert_eq!(
        m,
        Method::WMse(WhiteningParams {
            w_iter: 4,
            ..w_mse::defaults()
        })
    );
    assert_eq!(
        (w_mse::defaults().w_size, w_mse::defaults().groups),
        (128, 1)
    );
    let err = toml::from_str::<Method>("name = 'cw'\ngroup = 2").expect_err("typo");
    assert!(err.to_string().contains("group"), "{err}");
    let err = toml::from_str::<Method>("name = 'pca-whitening'\ngrups = 2").expect_err("typo");
    assert!(err.to_string().contains("grups"), "{err}");
    let err = toml::from_str::<Method>("name = 'w-mse'\nw_size = 'big'").expect_err("type");
    assert!(
        err.to_string().contains("w_size") || err.to_string().contains("big"),
        "{err}"
    );
}
