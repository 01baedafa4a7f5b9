//! The EMA target: construction copies the online network, updates follow
//! `ξ ← τξ + (1 − τ)θ` for parameters and the chosen rule for buffers, and
//! BYOL's τ schedule has its closed-form end points.

mod common;

use common::{max_abs_diff, variables};
use ssl_models::{BufferUpdate, Depth, EmaTarget, ModelError, ResNet, ResNetConfig, Stem};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

fn config() -> ResNetConfig {
    ResNetConfig::new(Depth::ResNet18, Stem::Cifar).with_width(0.125)
}

/// Trains the online network one "step" (perturbs every parameter and runs
/// a train-mode forward so BN statistics and counters move).
fn move_online(vs: &VarStore, net: &ResNet) {
    tch::no_grad(|| {
        for mut p in vs.trainable_variables() {
            let noise = p.randn_like() * 0.1;
            let _ = p.g_add_(&noise);
        }
    });
    let _ = tch::no_grad(|| {
        net.forward_t(
            &Tensor::randn([4, 3, 8, 8], (Kind::Float, Device::Cpu)),
            true,
        )
    });
}

#[test]
fn target_starts_equal_and_frozen_then_averages_parameters_and_copies_buffers() {
    common::single_threaded();
    tch::manual_seed(0);
    let online = VarStore::new(Device::Cpu);
    let net = ResNet::new(&online.root(), &config()).expect("online");
    tch::manual_seed(99); // a different draw: the copy must overwrite it
    let (mut target, target_net) =
        EmaTarget::new(&online, BufferUpdate::Copy, |p| ResNet::new(p, &config())).expect("target");
    let before = variables(target.var_store());
    for (name, t) in &before {
        assert!(t.equal(&variables(&online)[name]), "{name} not copied");
        assert!(!t.requires_grad(), "{name} must be frozen");
    }
    let snapshot: Vec<(String, Tensor)> =
        before.iter().map(|(k, v)| (k.clone(), v.copy())).collect();
    move_online(&online, &net);
    let tau = 0.9;
    target.update(&online, tau).expect("update");
    let online_vars = variables(&online);
    let after = variables(target.var_store());
    for (name, old) in snapshot {
        let theta = &online_vars[&name];
        if theta.requires_grad() {
            let expected =
                old.to_kind(Kind::Double) * tau + theta.to_kind(Kind::Double) * (1.0 - tau);
            // float32 arithmetic on O(1) values vs f64: ≲ 1e-7.
            assert!(max_abs_diff(&after[&name], &expected) < 1e-6, "{name}");
        } else {
            assert!(after[&name].equal(theta), "{name}: buffers are copied");
        }
    }
    assert_eq!(after["bn1.num_batches_tracked"].int64_value(&[]), 1);
    // The target network reads the target's variables.
    let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu));
    let a = tch::no_grad(|| target_net.forward_t(&x, false));
    let b = tch::no_grad(|| net.forward_t(&x, false));
    assert!(
        max_abs_diff(&a, &b) > 0.0,
        "target and online differ after τ < 1"
    );
    target.update(&online, 0.0).expect("τ = 0 copies");
    let c = tch::no_grad(|| target_net.forward_t(&x, false));
    assert!(
        max_abs_diff(&c, &b) < 1e-6,
        "τ = 0 makes the target the online network"
    );
}

#[test]
fn ema_buffer_mode_averages_running_statistics() {
    common::single_threaded();
    tch::manual_seed(1);
    let online = VarStore::new(Device::Cpu);
    let net = ResNet::new(&online.root(), &config()).expect("online");
    let (mut target, _) =
        EmaTarget::new(&online, BufferUpdate::Ema, |p| ResNet::new(p, &config())).expect("target");
    let old = variables(target.var_store())["bn1.running_mean"].copy();
    move_online(&online, &net);
    target.update(&online, 0.75).expect("update");
    let expected = old.to_kind(Kind::Double) * 0.75
        + variables(&online)["bn1.running_mean"].to_kind(Kind::Double) * 0.25;
    assert!(
        max_abs_diff(
            &variables(target.var_store())["bn1.running_mean"],
            &expected
        ) < 1e-6
    );
    assert!(
        target.update(&online, 1.5).is_err(),
        "τ outside [0, 1] is rejected"
    );
}

#[test]
fn a_target_of_another_shape_is_rejected_naming_the_tensors() {
    common::single_threaded();
    let online = VarStore::new(Device::Cpu);
    ResNet::new(&online.root(), &config()).expect("online");
    let err = EmaTarget::new(&online, BufferUpdate::Copy, |p| {
        ResNet::new(p, &config().with_width(0.25))
    })
    .expect_err("different widths");
    let msg = err.to_string();
    assert!(matches!(err, ModelError::Mismatch { .. }), "{msg}");
    assert!(
        msg.contains("`conv1.weight`: found shape [8, 3, 3, 3], expected [16, 3, 3, 3]"),
        "{msg}"
    );
}

/// BYOL: the online store also holds a predictor; the target mirrors only
/// the encoder and updates from the online variables of the same names.
#[test]
fn a_target_may_mirror_part_of_the_online_store() {
    common::single_threaded();
    tch::manual_seed(2);
    let online = VarStore::new(Device::Cpu);
    let net = ResNet::new(&(online.root() / "encoder"), &config()).expect("encoder");
    let _predictor = ssl_models::Mlp::byol_predictor(&(online.root() / "predictor"), 64, 32);
    let (mut target, _) = EmaTarget::new(&online, BufferUpdate::Copy, |p| {
        ResNet::new(&(p / "encoder"), &config())
    })
    .expect("partial target");
    let names = variables(target.var_store());
    assert!(names.keys().all(|k| k.starts_with("encoder.")) && !names.is_empty());
    move_online(&online, &net);
    target.update(&online, 0.5).expect("update");
    assert!(variables(target.var_store())["encoder.bn1.running_mean"]
        .equal(&variables(&online)["encoder.bn1.running_mean"]));
}
