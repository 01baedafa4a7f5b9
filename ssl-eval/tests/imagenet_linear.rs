//! The ImageNet linear protocol on tiny synthetic images with a tiny
//! encoder built from our layers (ssl-models' batch norm), and its
//! optimisers against torch's SGD and MoCo v3's LARS run by the venv
//! Python.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ssl_eval::{
    imagenet_linear, top_k_accuracy, ImagenetLinearConfig, ImagenetLinearTask, LinearClassifier,
    LinearOptimizer, LinearProtocol, TensorOptimizer,
};
use ssl_models::{batch_norm, BatchNormConfig};
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

/// A conv + our batch norm + ReLU + 2×2 pooling encoder (64 features),
/// whose running statistics have seen a few training-mode batches so that
/// evaluation mode differs from training mode.
fn tiny_encoder(vs: &nn::VarStore) -> nn::SequentialT {
    tch::manual_seed(0);
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
        .add(batch_norm(&(&root / "bn"), 16, BatchNormConfig::default()))
        .add_fn(|x| x.relu())
        .add_fn(|x| x.adaptive_avg_pool2d([2, 2]).flatten(1, -1));
    tch::no_grad(|| {
        for seed in 10..13 {
            let (x, _) = images(64, 6, seed);
            let _ = encoder.forward_t(&(x * 2.0 + 0.5), true);
        }
    });
    encoder
}

#[test]
fn frozen_encoder_with_frozen_bn_learns_a_linear_classifier() {
    let vs = nn::VarStore::new(Device::Cpu);
    let encoder = tiny_encoder(&vs);
    let before = var_values(&vs);
    let tracked = |v: &[(String, Tensor)]| {
        v.iter()
            .find(|(k, _)| k == "bn.num_batches_tracked")
            .map(|(_, t)| t.int64_value(&[]))
            .expect("our batch norm counts its training batches")
    };
    assert_eq!(tracked(&before), 3, "the warm-up batches were counted");
    let (classes, batch) = (6, 32);
    let (xtr, ytr) = images(384, classes, 1);
    let (xva, yva) = images(192, classes, 2);
    let cfg = ImagenetLinearConfig {
        epochs: 15,
        batch_size: batch,
        base_lr: 2.0,
        optimizer: LinearOptimizer::Sgd,
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
    let val_passes = std::cell::Cell::new(0);
    let val_batches = || {
        val_passes.set(val_passes.get() + 1);
        val.iter()
            .map(|(x, y)| (x.shallow_clone(), y.shallow_clone()))
            .collect::<Vec<_>>()
    };
    let (clf, res) =
        imagenet_linear(&task, train, augment, val_batches, &cfg).expect("protocol runs");
    // Validated after every epoch; the best epoch's top-1 is reported (the
    // release's best_acc1), the last epoch's beside it.
    assert_eq!(val_passes.get(), 15, "one validation per epoch");
    let (best, last) = (res.top1, res.last_top1.expect("last epoch's top-1"));
    assert!(best >= last, "{res:?}");
    assert!((1..=15).contains(&res.best_epoch.expect("best epoch")));
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
    // Frozen: weights, running statistics and the count of training
    // batches are bit-for-bit unchanged (a training-mode forward would have
    // moved the statistics and counted its batch).
    let after = var_values(&vs);
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        assert!(a.equal(b), "encoder variable {name} changed");
    }
    assert_eq!(tracked(&after), 3);
    // The reported top-1 is the classifier's on evaluation-mode features
    // (running statistics), which differ from training-mode ones here.
    let (eval_h, train_h) = tch::no_grad(|| {
        (
            encoder.forward_t(&xva, false),
            encoder.forward_t(&xva, true),
        )
    });
    let top1 = top_k_accuracy(&clf.logits(&eval_h), &yva, 1);
    assert!((top1 - last).abs() < 1e-12, "{top1} vs {res:?}");
    let gap = (&eval_h - &train_h).abs().max().double_value(&[]);
    assert!(
        gap > 0.1,
        "evaluation and training mode agree ({gap}): the check says nothing"
    );
}

/// `LinearOptimizer::Lars` runs LARS: one epoch of one batch gives the
/// classifier that the protocol's documented start (`N(0, 0.01²)` weights
/// from the seed, zero bias) and one LARS step of the cross-entropy
/// gradient at the first epoch's learning rate give, and differs from the
/// SGD run's; the result is labelled as the LARS protocol.
#[test]
fn the_lars_option_takes_lars_steps() {
    let vs = nn::VarStore::new(Device::Cpu);
    let encoder = tiny_encoder(&vs);
    let classes = 6;
    let (x, y) = images(48, classes, 3);
    let task = ImagenetLinearTask {
        encoder: &encoder,
        feature_dim: 64,
        num_classes: classes,
        device: Device::Cpu,
    };
    let run = |optimizer| {
        let cfg = ImagenetLinearConfig {
            epochs: 1,
            batch_size: 48,
            weight_decay: 1e-2,
            optimizer,
            seed: 5,
            ..ImagenetLinearConfig::paper()
        };
        let batches = |_| vec![(x.shallow_clone(), y.shallow_clone())];
        let val = || vec![(x.shallow_clone(), y.shallow_clone())];
        let (clf, res) = imagenet_linear(&task, batches, |t: &Tensor| t.shallow_clone(), val, &cfg)
            .expect("protocol runs");
        (clf, res, cfg)
    };
    let lars = LinearOptimizer::Lars {
        trust_coefficient: 1e-3,
    };
    let (clf, res, cfg) = run(lars);
    assert_eq!(res.protocol, LinearProtocol::ImagenetLars);
    let mut want =
        LinearClassifier::normal_init(64, classes, Device::Cpu, &mut ChaCha8Rng::seed_from_u64(5));
    let h = tch::no_grad(|| encoder.forward_t(&x, false));
    let (gw, gb) = want.cross_entropy_grad(&h, &y.one_hot(classes).to_kind(Kind::Float));
    let mut opt = TensorOptimizer::lars(&[&want.weight, &want.bias], cfg.momentum, 1e-2, 1e-3);
    opt.step(
        &mut [&mut want.weight, &mut want.bias],
        vec![gw, gb],
        cfg.lr_at(0),
    );
    let dw = (&clf.weight - &want.weight).abs().max().double_value(&[]);
    let db = (&clf.bias - &want.bias).abs().max().double_value(&[]);
    assert!(dw < 1e-7 && db < 1e-7, "weight off by {dw}, bias by {db}");
    let (sgd, res_sgd, _) = run(LinearOptimizer::Sgd);
    assert_eq!(res_sgd.protocol, LinearProtocol::ImagenetSgd);
    let apart = (&sgd.weight - &clf.weight).abs().max().double_value(&[]);
    assert!(apart > 1e-4, "SGD and LARS took the same step ({apart})");
}

#[test]
fn sgd_lars_and_larc_match_torch_step_for_step() {
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
    let run = |name: &str| {
        let (mut w, mut b) = (w0.copy(), b0.copy());
        let mut opt = match name {
            "sgd" => TensorOptimizer::sgd(&[&w, &b], momentum, wd),
            "lars" => TensorOptimizer::lars(&[&w, &b], momentum, wd, trust),
            _ => TensorOptimizer::larc(&[&w, &b], momentum, wd, trust),
        };
        for (s, lr) in lrs.iter().enumerate() {
            let grads = vec![gw.get(s as i64), gb.get(s as i64)];
            opt.step(&mut [&mut w, &mut b], grads, *lr);
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
class LARC:
    """apex.parallel.LARC (clip=False) around an optimiser, as the release's
    ImageNet/lincls.py --lars builds it: LARC(optimizer, trust_coefficient=.001, clip=False)."""
    def __init__(self, optimizer, trust_coefficient=0.02, clip=True, eps=1e-8):
        self.optim, self.trust_coefficient, self.clip, self.eps = optimizer, trust_coefficient, clip, eps
        self.param_groups = optimizer.param_groups
    def step(self):
        with torch.no_grad():
            weight_decays = []
            for group in self.optim.param_groups:
                weight_decay = group['weight_decay'] if 'weight_decay' in group else 0
                weight_decays.append(weight_decay)
                group['weight_decay'] = 0
                for p in group['params']:
                    if p.grad is None:
                        continue
                    param_norm = torch.norm(p.data)
                    grad_norm = torch.norm(p.grad.data)
                    if param_norm != 0 and grad_norm != 0:
                        adaptive_lr = self.trust_coefficient * (param_norm) / (grad_norm + param_norm * weight_decay + self.eps)
                        if self.clip:
                            adaptive_lr = min(adaptive_lr / group['lr'], 1)
                        p.grad.data += weight_decay * p.data
                        p.grad.data *= adaptive_lr
        self.optim.step()
        for i, group in enumerate(self.optim.param_groups):
            group['weight_decay'] = weight_decays[i]
gw, gb = L("gw"), L("gb")
for name in ("sgd", "lars", "larc"):
    w = torch.nn.Parameter(L("w0").clone()); b = torch.nn.Parameter(L("b0").clone())
    if name == "sgd":
        opt = torch.optim.SGD([w, b], lr=0.5, momentum=0.9, weight_decay=1e-2)
    elif name == "larc":
        opt = LARC(torch.optim.SGD([w, b], lr=0.5, momentum=0.9, weight_decay=1e-2), trust_coefficient=1e-3, clip=False)
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
    for name in ["sgd", "lars", "larc"] {
        let (w, b) = run(name);
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
}
