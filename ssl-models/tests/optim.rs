//! Our optimisers against `torch.optim` run by the venv's torch in the test
//! on the same parameters and gradient sequence, and LARS against an f64
//! evaluation of its formula.

mod common;

use common::max_abs_diff;
use ssl_models::{ModelError, Optimizer, OptimizerKind};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const TORCH_OPTIM: &str = r#"
import sys, torch, numpy as np
torch.set_num_threads(1)
out = sys.argv[1]
torch.manual_seed(0)
w0, b0 = torch.randn(3, 4), torch.randn(4)
gw, gb = torch.randn(6, 3, 4), torch.randn(6, 4)
for name in ["w0", "b0", "gw", "gb"]:
    np.save(f"{out}/{name}.npy", globals()[name].numpy())
for opt_name, make in [("adam", lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=1e-3, foreach=False)),
                       ("sgd", lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-4, foreach=False))]:
    w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
    opt = make([w, b])
    for t in range(6):
        w.grad, b.grad = gw[t].clone(), gb[t].clone()
        opt.step()
    np.save(f"{out}/{opt_name}_w.npy", w.detach().numpy())
    np.save(f"{out}/{opt_name}_b.npy", b.detach().numpy())
"#;

/// Runs 6 steps of `kind` with gradients `gw[t]`, `gb[t]` (made exact by the
/// loss `Σ w·gw[t] + Σ b·gb[t]`), returning the final (w, b).
fn run(
    kind: OptimizerKind,
    lr: f64,
    wd: f64,
    w0: &Tensor,
    b0: &Tensor,
    gw: &Tensor,
    gb: &Tensor,
) -> (Tensor, Tensor) {
    let vs = VarStore::new(Device::Cpu);
    let w = vs.root().var_copy("w", w0);
    let b = vs.root().var_copy("b", b0);
    let mut opt = Optimizer::new(kind, lr, wd, &[("", &vs)]).expect("optimiser");
    for t in 0..6 {
        let loss = (&w * gw.get(t)).sum(Kind::Float) + (&b * gb.get(t)).sum(Kind::Float);
        opt.backward_step(&loss);
    }
    assert_eq!(opt.step_count(), 6);
    (w.detach(), b.detach())
}

/// Same float32 arithmetic as torch's single-tensor path except the order
/// of a few multiplications (`(1−β₂)·g·g` vs `g·(1−β₂)·g`, `m·(−α)/d` vs
/// `−α·(m/d)`): a few ulps per step, so 1e-6 on values of order 1 after 6
/// steps is tight yet far below any formula error (lr·1e-2 at least).
#[test]
fn adam_and_sgd_match_torch_optim() {
    common::single_threaded();
    let dir = test_support::scratch_dir();
    test_support::run_python(TORCH_OPTIM, &[dir.path().to_str().expect("utf-8 path")]);
    let load = |name: &str| Tensor::read_npy(dir.path().join(format!("{name}.npy"))).expect(name);
    let (w0, b0, gw, gb) = (load("w0"), load("b0"), load("gw"), load("gb"));
    for (name, kind, lr, wd) in [
        ("adam", OptimizerKind::adam(), 0.01, 1e-3),
        ("sgd", OptimizerKind::Sgd { momentum: 0.9 }, 0.05, 1e-4),
    ] {
        let (w, b) = run(kind, lr, wd, &w0, &b0, &gw, &gb);
        let (dw, db) = (
            max_abs_diff(&w, &load(&format!("{name}_w"))),
            max_abs_diff(&b, &load(&format!("{name}_b"))),
        );
        eprintln!("{name}: max|Δw| {dw:.2e}, max|Δb| {db:.2e} after 6 steps vs torch.optim");
        assert!(dw < 1e-6 && db < 1e-6, "{name} differs from torch.optim");
        assert!(
            max_abs_diff(&w, &w0) > 1e-3,
            "{name} must move the parameters"
        );
    }
}

/// LARS, two steps in f64 by hand: `g ← ∇ + wd·θ`; for a matrix
/// `g ← η‖θ‖/‖g‖ · g`; `b ← μb + g`; `θ ← θ − lr·b`. Vectors skip the trust
/// ratio.
#[test]
fn lars_follows_its_formula() {
    common::single_threaded();
    let (lr, wd, momentum, eta) = (0.1, 0.01, 0.9, 0.001);
    tch::manual_seed(5);
    let w0 = Tensor::randn([4, 5], (Kind::Float, Device::Cpu));
    let b0 = Tensor::randn([5], (Kind::Float, Device::Cpu));
    let gw = Tensor::randn([2, 4, 5], (Kind::Float, Device::Cpu));
    let gb = Tensor::randn([2, 5], (Kind::Float, Device::Cpu));
    let vs = VarStore::new(Device::Cpu);
    let w = vs.root().var_copy("w", &w0);
    let b = vs.root().var_copy("b", &b0);
    let mut opt =
        Optimizer::new(OptimizerKind::Lars { momentum, eta }, lr, wd, &[("", &vs)]).expect("lars");
    let (mut w64, mut b64) = (w0.to_kind(Kind::Double), b0.to_kind(Kind::Double));
    let (mut mw, mut mb) = (w64.zeros_like(), b64.zeros_like());
    for t in 0..2 {
        let loss = (&w * gw.get(t)).sum(Kind::Float) + (&b * gb.get(t)).sum(Kind::Float);
        opt.backward_step(&loss);
        let g = gw.get(t).to_kind(Kind::Double) + &w64 * wd;
        let trust = eta * w64.norm().double_value(&[]) / g.norm().double_value(&[]);
        mw = &mw * momentum + g * trust;
        w64 = &w64 - &mw * lr;
        // MoCo v3's LARS: biases (one dimension) get neither weight decay nor
        // the trust ratio.
        mb = &mb * momentum + gb.get(t).to_kind(Kind::Double);
        b64 = &b64 - &mb * lr;
    }
    // float32 vs f64 over two steps of O(1) values: ≲ 1e-6.
    assert!(max_abs_diff(&w, &w64) < 1e-6, "LARS weight update");
    assert!(max_abs_diff(&b, &b64) < 1e-6, "LARS bias update");
}

#[test]
fn state_round_trips_and_mismatches_are_named() {
    common::single_threaded();
    let vs = VarStore::new(Device::Cpu);
    let w = vs.root().randn_standard("w", &[2, 3]);
    let mut opt = Optimizer::new(OptimizerKind::adam(), 0.1, 0.0, &[("net.", &vs)]).expect("adam");
    opt.backward_step(&w.square().sum(Kind::Float));
    let state = opt.state();
    let names: Vec<&String> = state.keys().collect();
    assert_eq!(names, ["exp_avg.net.w", "exp_avg_sq.net.w", "step"]);
    let mut fresh =
        Optimizer::new(OptimizerKind::adam(), 0.1, 0.0, &[("net.", &vs)]).expect("adam");
    fresh.load_state("mem".as_ref(), &state).expect("load");
    assert_eq!(fresh.step_count(), 1);
    for (k, v) in fresh.state() {
        assert!(v.equal(&state[&k]), "{k}");
    }
    let mut bad = state;
    bad.remove("exp_avg.net.w");
    bad.insert(
        "exp_avg_sq.net.w".into(),
        Tensor::zeros([3, 2], (Kind::Float, Device::Cpu)),
    );
    let err = fresh
        .load_state("opt.safetensors".as_ref(), &bad)
        .expect_err("mismatch");
    let msg = err.to_string();
    assert!(
        matches!(err, ModelError::Mismatch { ref mismatches, .. } if mismatches.len() == 2),
        "{msg}"
    );
    assert!(
        msg.contains("opt.safetensors")
            && msg.contains("missing `exp_avg.net.w`")
            && msg.contains("`exp_avg_sq.net.w`: found shape [3, 2]"),
        "{msg}"
    );
}

/// The slice Adam of the fused linear probe against the tensor kernel, over
/// 30 steps with weight decay: the same f32 operations in the same order,
/// so the results agree to an ulp or two (libtorch may fuse a multiply-add
/// the slice loop does not, or vice versa).
#[test]
fn slice_adam_matches_the_tensor_kernel() {
    use ssl_models::{adam_update_slice, update_parameter, OptimizerKind};
    let n = 257;
    let init: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
        .collect();
    let mut p_t = tch::Tensor::from_slice(&init);
    let mut slots = vec![p_t.zeros_like(), p_t.zeros_like()];
    let (mut p_s, mut m, mut v) = (init.clone(), vec![0f32; n], vec![0f32; n]);
    let kind = OptimizerKind::adam();
    let OptimizerKind::Adam { beta1, beta2, eps } = kind else {
        unreachable!()
    };
    for step in 1..=30 {
        let grad: Vec<f32> = (0..n)
            .map(|i| ((i * 13 + step * 7) % 29) as f32 / 29.0 - 0.5)
            .collect();
        let lr = 1e-2 * 0.98f64.powi(step as i32);
        update_parameter(
            kind,
            &mut p_t,
            tch::Tensor::from_slice(&grad),
            &mut slots,
            lr,
            5e-6,
            step as f64,
        );
        adam_update_slice(
            &mut p_s,
            &grad,
            &mut m,
            &mut v,
            lr,
            5e-6,
            (beta1, beta2, eps),
            step as f64,
        );
    }
    let p_t: Vec<f32> = Vec::try_from(&p_t).unwrap();
    let moved = p_s.iter().zip(&init).any(|(a, b)| (a - b).abs() > 1e-3);
    assert!(moved, "30 Adam steps at lr 1e-2 must move the parameters");
    for (i, (a, b)) in p_s.iter().zip(&p_t).enumerate() {
        assert!(
            (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
            "[{i}] slice {a} vs tensor {b}"
        );
    }
}
