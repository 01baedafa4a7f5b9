//! The ImageNet linear protocol on tiny synthetic images with a tiny
//! encoder, and its optimisers against torch's SGD and MoCo v3's LARS run
//! by the venv Python.

use ssl_eval::{
    imagenet_linear, ImagenetLinearConfig, ImagenetLinearTask, LinearOptimizer, LinearProtocol,
    TensorOptimizer,
};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

#[test]
fn cosine_schedule_and_scaled_learning_rate() {
    let cfg = ImagenetLinearConfig::paper();
    assert_eq!(
        (cfg.epochs, cfg.batch_size, cfg.weight_decay),
        (100, 1024, 0.0)
    );
    assert!((cfg.peak_lr() - 0.4).abs() < 1e-12, "0.1 · 1024/256");
    assert!((cfg.lr_at(0) - 0.4).abs() < 1e-12);
    assert!(
        (cfg.lr_at(50) - 0.2).abs() < 1e-12,
        "half-way the cosine is at half"
    );
    assert!(cfg.lr_at(99) > 0.0 && cfg.lr_at(99) < 1e-3);
}

/// Images of `classes` classes: class `c` brightens channel `c % 3` in the
/// top half (`c < 3`) or the bottom half; plus noise.
fn images(n: i64, classes: i64, seed: i64) -> (Tensor, Tensor) {
    tch::manual_seed(seed);
    let y = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(classes);
    let x = Tensor::randn([n, 3, 8, 8], CPU) * 0.3;
    let yv = Vec::<i64>::try_from(&y).expect("i64");
    for (i, c) in yv.iter().enumerate() {
        let rows = if *c < 3 { 0 } else { 4 };
        let _ = x
            .get(i as i64)
            .get(c % 3)
            .narrow(0, rows, 4)
            .g_add_scalar_(1.5);
    }
    (x, y)
}

fn var_values(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, t)| (k, t.copy()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn frozen_encoder_with_frozen_bn_learns_a_linear_classifier() {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let encoder = nn::seq_t()
        .add(nn::conv2d(
            &root / "conv",
            3,
            16,
            3,
            nn::ConvConfig {
                padding: 1,
                ..Default::default()
            },
        ))
        .add(nn::batch_norm2d(&root / "bn", 16, Default::default()))
        .add_fn(|x| x.relu())
        .add_fn(|x| x.adaptive_avg_pool2d([2, 2]).flatten(1, -1));
    let before = var_values(&vs);
    let (classes, batch) = (6, 32);
    let (xtr, ytr) = images(384, classes, 1);
    let (xva, yva) = images(192, classes, 2);
    let cfg = ImagenetLinearConfig {
        epochs: 15,
        batch_size: batch,
        base_lr: 2.0,
        ..ImagenetLinearConfig::paper()
    };
    let task = ImagenetLinearTask {
        encoder: &encoder,
        feature_dim: 64,
        num_classes: classes,
        device: Device::Cpu,
    };
    let mut augment_calls = 0;
    let train = |epoch: usize| {
        // A different batch order each epoch, as a shuffling loader gives.
        let perm = Tensor::randperm(384, (Kind::Int64, Device::Cpu));
        let _ = epoch;
        let (x, y) = (xtr.index_select(0, &perm), ytr.index_select(0, &perm));
        (0..384 / batch)
            .map(move |b| (x.narrow(0, b * batch, batch), y.narrow(0, b * batch, batch)))
            .collect::<Vec<_>>()
    };
    // Horizontal flip of a random half of the batch: label-preserving here.
    let augment = |x: &Tensor| {
        augment_calls += 1;
        let flip = Tensor::rand([x.size()[0], 1, 1, 1], CPU).lt(0.5);
        x.flip([3]).where_self(&flip, x)
    };
    let val: Vec<(Tensor, Tensor)> = (0..3)
        .map(|b| (xva.narrow(0, b * 64, 64), yva.narrow(0, b * 64, 64)))
        .collect();
    let (clf, res) = imagenet_linear(&task, train, augment, val, &cfg).expect("protocol runs");
    assert_eq!(
        augment_calls,
        15 * 12,
        "one augmentation per training batch"
    );
    assert_eq!(
        (res.protocol, res.epochs, res.n_train, res.n_test),
        (LinearProtocol::ImagenetSgd, 15, 384, 192)
    );
    // The classes differ in where and which channel is bright: a frozen
    // random conv + BN + ReLU + 2×2 pooling keeps that linearly visible.
    assert!(res.top1 >= 0.9, "{res:?}");
    assert!(res.top5 >= res.top1);
    assert_eq!(clf.weight.size(), vec![classes, 64]);
    // Frozen: weights and BN running statistics are bit-for-bit unchanged.
    for ((name, a), (_, b)) in before.iter().zip(var_values(&vs)) {
        assert!(a.equal(&b), "encoder variable {name} changed");
    }
    // Evaluation-mode forward: BN uses running stats, so two calls on
    // different batches give the same per-example output.
    let one = encoder.forward_t(&xva.narrow(0, 0, 1), false);
    let with_others = encoder
        .forward_t(&xva.narrow(0, 0, 8), false)
        .narrow(0, 0, 1);
    assert!(one.allclose(&with_others, 1e-5, 1e-6, false));
}

#[test]
fn sgd_and_lars_match_torch_step_for_step() {
    tch::manual_seed(4);
    let (w0, b0) = (Tensor::randn([3, 5], CPU), Tensor::randn([3], CPU));
    let gw = Tensor::randn([4, 3, 5], CPU);
    let gb = Tensor::randn([4, 3], CPU);
    let dir = test_support::scratch_dir();
    for (t, name) in [(&w0, "w0"), (&b0, "b0"), (&gw, "gw"), (&gb, "gb")] {
        t.write_npy(dir.path().join(format!("{name}.npy")))
            .expect("npy");
    }
    let lrs = [0.5, 0.4, 0.3, 0.2];
    let (momentum, wd, trust) = (0.9, 1e-2, 1e-3);
    // Both runs read the same gradient tensors (views of gw, gb): an
    // optimiser writing weight decay into its input would break the second.
    let run = |lars: bool| {
        let (mut w, mut b) = (w0.copy(), b0.copy());
        let mut sgd = TensorOptimizer::sgd(&[&w, &b], momentum, wd);
        let mut lars_opt = TensorOptimizer::lars(&[&w, &b], momentum, wd, trust);
        for (s, lr) in lrs.iter().enumerate() {
            let grads = vec![gw.get(s as i64), gb.get(s as i64)];
            if lars {
                lars_opt.step(&mut [&mut w, &mut b], grads, *lr);
            } else {
                sgd.step(&mut [&mut w, &mut b], grads, *lr);
            }
        }
        (w, b)
    };
    // torch.optim.SGD, and the LARS class of MoCo v3 / SimSiam (verbatim).
    let script = r#"
import sys, numpy as np, torch
p = sys.argv[1]
L = lambda n: torch.from_numpy(np.load(f"{p}/{n}.npy"))
class LARS(torch.optim.Optimizer):
    def __init__(self, params, lr=0, weight_decay=0, momentum=0.9, trust_coefficient=0.001):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, trust_coefficient=trust_coefficient)
        super().__init__(params, defaults)
    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g['params']:
                dp = p.grad
                if dp is None:
                    continue
                if p.ndim > 1:
                    dp = dp.add(p, alpha=g['weight_decay'])
                    param_norm = torch.norm(p)
                    update_norm = torch.norm(dp)
                    one = torch.ones_like(param_norm)
                    q = torch.where(param_norm > 0.,
                                    torch.where(update_norm > 0,
                                                (g['trust_coefficient'] * param_norm / update_norm), one), one)
                    dp = dp.mul(q)
                param_state = self.state[p]
                if 'mu' not in param_state:
                    param_state['mu'] = torch.zeros_like(p)
                mu = param_state['mu']
                mu.mul_(g['momentum']).add_(dp)
                p.add_(mu, alpha=-g['lr'])
gw, gb = L("gw"), L("gb")
for name in ("sgd", "lars"):
    w = torch.nn.Parameter(L("w0").clone()); b = torch.nn.Parameter(L("b0").clone())
    if name == "sgd":
        opt = torch.optim.SGD([w, b], lr=0.5, momentum=0.9, weight_decay=1e-2)
    else:
        opt = LARS([w, b], lr=0.5, weight_decay=1e-2, momentum=0.9, trust_coefficient=1e-3)
    for s, lr in enumerate([0.5, 0.4, 0.3, 0.2]):
        for g in opt.param_groups:
            g['lr'] = lr
        w.grad, b.grad = gw[s].clone(), gb[s].clone()
        opt.step()
    np.save(f"{p}/{name}_w.npy", w.detach().numpy()); np.save(f"{p}/{name}_b.npy", b.detach().numpy())
"#;
    test_support::run_python(script, &[dir.path().to_str().expect("utf-8 path")]);
    for (lars, name) in [(false, "sgd"), (true, "lars")] {
        let (w, b) = run(lars);
        let w_ref = Tensor::read_npy(dir.path().join(format!("{name}_w.npy"))).expect("npy");
        let b_ref = Tensor::read_npy(dir.path().join(format!("{name}_b.npy"))).expect("npy");
        // Four f32 updates of values ~1: identical formulas agree to a few ulps.
        assert!(
            w.allclose(&w_ref, 1e-5, 1e-6, false),
            "{name} weight: {}",
            (&w - &w_ref).abs().max()
        );
        assert!(
            b.allclose(&b_ref, 1e-5, 1e-6, false),
            "{name} bias: {}",
            (&b - &b_ref).abs().max()
        );
        // And the step actually moved them (the check is not vacuous).
        assert!(
            !w.allclose(&w0, 1e-3, 1e-3, false),
            "{name} did not move the weight"
        );
    }
    let cfg = ImagenetLinearConfig {
        optimizer: LinearOptimizer::Lars {
            trust_coefficient: 1e-3,
        },
        ..ImagenetLinearConfig::paper()
    };
    assert_eq!(
        cfg.optimizer,
        LinearOptimizer::Lars {
            trust_coefficient: 1e-3
        }
    );
}
