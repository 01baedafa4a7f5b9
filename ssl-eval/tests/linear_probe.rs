//! The linear probe and its pieces against independent evidence: torch's
//! autograd for the closed-form gradient, `torch.optim.Adam` +
//! `ExponentialLR` (the reference loop, fed our initial weights and
//! permutations) run by the venv Python, and separable data.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ssl_eval::{
    epoch_permutation, linear_probe, train_linear_probe, EvalError, Features, LinearClassifier,
    LinearProbeConfig,
};
use tch::{Device, Kind, Tensor};

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

/// One problem of `classes` Gaussian clusters in `d` dimensions: the
/// centres `spread·N(0, I)` are drawn from `seed`, and each split its own
/// examples `centre[y] + noise·N(0, I)` from its own seed.
struct Clusters {
    centres: Tensor,
    noise: f64,
}

impl Clusters {
    fn new(d: i64, classes: i64, spread: f64, noise: f64, seed: i64) -> Self {
        tch::manual_seed(seed);
        Self {
            centres: Tensor::randn([classes, d], CPU) * spread,
            noise,
        }
    }

    /// `n` examples, labels `0, 1, …` in turn, noise drawn from `seed`.
    fn split(&self, n: i64, seed: i64) -> Features {
        tch::manual_seed(seed);
        let classes = self.centres.size()[0];
        let y = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(classes);
        let d = self.centres.size()[1];
        let x = self.centres.index_select(0, &y) + Tensor::randn([n, d], CPU) * self.noise;
        Features::new(x, y, "clusters").expect("valid")
    }

    /// A training and a test split with different noise: no test row is a
    /// training row (checked), so test accuracy measures generalisation.
    fn train_test(&self, n_train: i64, n_test: i64, seed: i64) -> (Features, Features) {
        let (train, test) = (self.split(n_train, seed), self.split(n_test, seed + 1000));
        let dist = test.x.unsqueeze(1) - train.x.unsqueeze(0);
        let nearest = dist.square().sum_dim_intlist(2, false, Kind::Float).min();
        assert!(
            nearest.double_value(&[]) > 1e-6,
            "a test row repeats a training row"
        );
        (train, test)
    }
}

/// `n` examples of a clusters problem drawn from `seed` (centres and noise).
fn clusters(n: i64, d: i64, classes: i64, spread: f64, noise: f64, seed: i64) -> Features {
    Clusters::new(d, classes, spread, noise, seed).split(n, seed)
}

#[test]
fn closed_form_gradient_matches_autograd() {
    tch::manual_seed(5);
    let (b, d, c) = (37, 9, 4);
    let x = Tensor::randn([b, d], CPU);
    let y = Tensor::randint(c, [b], (Kind::Int64, Device::Cpu));
    let clf = LinearClassifier {
        weight: Tensor::randn([c, d], CPU),
        bias: Tensor::randn([c], CPU),
    };
    let (gw, gb) = clf.cross_entropy_grad(&x, &y.one_hot(c).to_kind(Kind::Float));
    let w = clf.weight.detach().set_requires_grad(true);
    let bias = clf.bias.detach().set_requires_grad(true);
    let loss = x.matmul(&w.tr()).g_add(&bias).cross_entropy_for_logits(&y);
    let grads = Tensor::run_backward(&[loss.shallow_clone()], &[&w, &bias], false, false);
    // f32 products of 37 terms: agreement to 1e-6 absolute is rounding.
    assert!(
        gw.allclose(&grads[0], 1e-5, 1e-6, false),
        "dW differs by {}",
        (&gw - &grads[0]).abs().max()
    );
    assert!(
        gb.allclose(&grads[1], 1e-5, 1e-6, false),
        "db differs by {}",
        (&gb - &grads[1]).abs().max()
    );
    assert!((clf.cross_entropy(&x, &y) - loss.double_value(&[])).abs() < 1e-5);
}

#[test]
fn learning_rate_decays_exponentially_from_1e_2_to_1e_6() {
    let cfg = LinearProbeConfig::reference();
    assert_eq!(
        (cfg.epochs, cfg.batch_size, cfg.weight_decay),
        (500, 1000, 5e-6)
    );
    assert!((cfg.lr_at(0) - 1e-2).abs() < 1e-15);
    assert!(
        (cfg.lr_at(500) / 1e-6 - 1.0).abs() < 1e-9,
        "{}",
        cfg.lr_at(500)
    );
    assert!(
        (cfg.lr_at(250) / 1e-4 - 1.0).abs() < 1e-9,
        "halfway is the geometric mean"
    );
}

#[test]
fn separable_clusters_reach_100_percent() {
    let (train, test) = Clusters::new(8, 3, 5.0, 0.5, 1).train_test(600, 300, 1);
    let cfg = LinearProbeConfig {
        epochs: 30,
        batch_size: 100,
        ..LinearProbeConfig::reference()
    };
    let (_, res) = linear_probe(&train, &test, &cfg).expect("probe");
    assert_eq!(res.top1, 1.0, "{res:?}");
    assert_eq!(res.top5, 1.0, "3 classes: top-5 is everything");
    assert!(res.train_loss < 0.05, "{res:?}");
}

/// The reported accuracy is the trained classifier's on the test split
/// (overlapping clusters, so it differs from the training split's).
#[test]
fn reports_the_accuracy_on_the_test_split() {
    let (train, test) = Clusters::new(6, 3, 1.0, 1.0, 7).train_test(450, 300, 7);
    let cfg = LinearProbeConfig {
        epochs: 40,
        batch_size: 100,
        ..LinearProbeConfig::reference()
    };
    let (clf, res) = linear_probe(&train, &test, &cfg).expect("probe");
    assert_eq!((res.n_train, res.n_test), (450, 300));
    let (on_test, top5) = clf.accuracy(&test.x, &test.y, 64);
    let (on_train, _) = clf.accuracy(&train.x, &train.y, 64);
    assert!(
        (on_test - on_train).abs() > 1e-3,
        "the splits do not tell apart"
    );
    assert_eq!((res.top1, res.top5), (on_test, top5), "{res:?}");
}

#[test]
fn matches_the_reference_adam_loop_in_torch() {
    // Overlapping clusters: no classifier reaches 100%, so the optimum is
    // finite and the comparison is of the whole trajectory. 450 rows in
    // batches of 100 also exercises the last partial batch.
    let (n, d, c) = (450, 6, 3);
    let (train, test) = Clusters::new(d, c, 1.0, 1.0, 7).train_test(n, 300, 7);
    let cfg = LinearProbeConfig {
        epochs: 40,
        batch_size: 100,
        ..LinearProbeConfig::reference()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let init = LinearClassifier::torch_default_init(d, c, Device::Cpu, &mut rng);
    // The permutations train_linear_probe will draw from the same RNG state.
    let mut replay = rng.clone();
    let perms: Vec<i64> = (0..cfg.epochs)
        .flat_map(|_| epoch_permutation(n, &mut replay))
        .collect();
    let dir = test_support::scratch_dir();
    let save = |t: &Tensor, name: &str| {
        t.write_npy(dir.path().join(format!("{name}.npy")))
            .expect("npy")
    };
    save(&train.x, "x");
    save(&train.y, "y");
    save(&test.x, "xt");
    save(&test.y, "yt");
    save(&init.weight, "w0");
    save(&init.bias, "b0");
    save(
        &Tensor::from_slice(&perms).view([cfg.epochs as i64, n]),
        "perms",
    );
    let clf = train_linear_probe(&train, init, &cfg, &mut rng).expect("probe trains");
    // The reference eval_sgd loop with torch's Adam, fed the same start and batches.
    let script = r#"
import sys, numpy as np, torch
import torch.nn.functional as F
p = sys.argv[1]
L = lambda n: torch.from_numpy(np.load(f"{p}/{n}.npy"))
x, y, xt, yt, perms = L("x"), L("y"), L("xt"), L("yt"), L("perms")
epochs = perms.shape[0]
clf = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
with torch.no_grad():
    clf.weight.copy_(L("w0")); clf.bias.copy_(L("b0"))
opt = torch.optim.Adam(clf.parameters(), lr=1e-2, weight_decay=5e-6)
sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=(1e-6 / 1e-2) ** (1 / epochs))
for e in range(epochs):
    for idx in perms[e].split(100):
        opt.zero_grad()
        F.cross_entropy(clf(x[idx]), y[idx]).backward()
        opt.step()
    sched.step()
np.save(f"{p}/w.npy", clf.weight.detach().numpy())
np.save(f"{p}/b.npy", clf.bias.detach().numpy())
with torch.no_grad():
    print((clf(xt).argmax(1) == yt).float().mean().item())
"#;
    let out = test_support::run_python(script, &[dir.path().to_str().expect("utf-8 path")]);
    let ref_acc: f64 = out.trim().parse().expect("accuracy printed");
    let w_ref = Tensor::read_npy(dir.path().join("w.npy")).expect("npy");
    let b_ref = Tensor::read_npy(dir.path().join("b.npy")).expect("npy");
    // Same maths in f32 in a different order (lerp vs mul-add, fused [W|b]
    // product): after 200 Adam steps the weights (size ~1) differed by
    // 6e-8 when this test was written, i.e. float rounding; 1e-6 leaves
    // room for other BLAS kernels and still catches any difference in the
    // update rule, the schedule or the batches.
    let dw = (&clf.weight - &w_ref).abs().max().double_value(&[]);
    let db = (&clf.bias - &b_ref).abs().max().double_value(&[]);
    assert!(
        dw < 1e-6 && db < 1e-6,
        "weights differ from torch by {dw}, bias by {db}"
    );
    let (top1, _) = clf.accuracy(&test.x, &test.y, 64);
    assert!(
        (top1 - ref_acc).abs() <= 1.0 / 300.0 + 1e-9,
        "ours {top1} vs torch {ref_acc}"
    );
    assert!(
        top1 < 1.0 && top1 > 0.5,
        "the problem is neither separable nor hopeless: {top1}"
    );
}

#[test]
fn mismatched_inputs_are_errors() {
    let train = clusters(20, 4, 2, 1.0, 1.0, 0);
    let test = clusters(10, 5, 2, 1.0, 1.0, 0);
    let err = linear_probe(&train, &test, &LinearProbeConfig::reference()).expect_err("d differs");
    assert!(matches!(err, EvalError::Shape { .. }), "{err}");
    let cfg = LinearProbeConfig {
        batch_size: 0,
        ..LinearProbeConfig::reference()
    };
    let err = linear_probe(&train, &clusters(10, 4, 2, 1.0, 1.0, 0), &cfg).expect_err("batch 0");
    assert!(err.to_string().contains("linear.batch_size"), "{err}");
    let bad = Features::new(
        Tensor::zeros([3, 2], CPU),
        Tensor::zeros([4], (Kind::Int64, Device::Cpu)),
        "probe",
    );
    assert!(matches!(bad, Err(EvalError::Shape { .. })));
}
