//! Every loss's value and gradient in float64 against the CW-RGP release's
//! own code: `release_port.py` ports the release's loss functions
//! statement by statement, each named after its file (e.g.
//! `base_methods_cwrgp_CW_RGP_forward` for `base/methods/cwrgp.py`), and
//! runs them with the venv's torch on the same inputs and the same random
//! draws (sub-batch orders and channel shuffles drawn by our RNG). SwAV,
//! which the release does not have, is checked against an independent
//! torch implementation of SwAV's own code (`swav_reference.py`).
//!
//! Everything runs in float64, so the two sides differ only by rounding and
//! by the decomposition (our eigh and closed-form ZCA gradient vs the
//! release's SVD and autograd): the tolerance is 1e-8 relative to the
//! largest entry (agreement measured at about 1e-12). Not covered: PCA
//! whitening (`base/methods/pca.py`), whose loss depends on the signs the
//! SVD gives its eigenvectors, which no two implementations need share.
//!
//! The cases of one script go to Python in one invocation (torch's import
//! dominates the cost), and every disagreeing case is reported.

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use ssl_losses::{
    barlow_twins_loss, barlow_twins_loss_of_normalized, byol_loss, byol_tau, norm_mse, nt_xent,
    simsiam_loss, swav_loss, vicreg_loss, zero_cl_instance_loss, CovarianceTerm, SwavParams,
    VicRegWeights, ViewTransform, WhiteningLoss,
};
use tch::{Device, Kind, Tensor};
use whitening_core::{
    random_group_partition, random_sub_batches, WhiteningAxis, WhiteningConfig, WhiteningKind,
};

const RELEASE_PORT: &str = include_str!("release_port.py");
const SWAV_REFERENCE: &str = include_str!("swav_reference.py");
const TOL: f64 = 1e-8;

fn randn(shape: &[i64], seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randn(shape, (Kind::Double, Device::Cpu)).set_requires_grad(true)
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

/// One comparison: our loss on `inputs` (and any extra data files), and the
/// reference's configuration.
struct Case {
    name: String,
    cfg: serde_json::Value,
    inputs: Vec<(&'static str, Tensor)>,
    data: Vec<(&'static str, Tensor)>,
    ours: Tensor,
    /// Inputs behind a stop-gradient, which must get no gradient at all.
    no_grad: Vec<&'static str>,
}

impl Case {
    fn new(
        name: &str,
        cfg: serde_json::Value,
        inputs: Vec<(&'static str, Tensor)>,
        ours: Tensor,
    ) -> Self {
        Self {
            name: name.into(),
            cfg,
            inputs,
            data: Vec::new(),
            ours,
            no_grad: Vec::new(),
        }
    }

    fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir).expect("case dir");
        for (name, t) in self.inputs.iter().chain(&self.data) {
            t.detach()
                .write_npy(dir.join(format!("{name}.npy")))
                .expect("write input");
        }
        let mut cfg = self.cfg.clone();
        cfg["inputs"] = json!(self.inputs.iter().map(|(n, _)| *n).collect::<Vec<_>>());
        std::fs::write(dir.join("cfg.json"), cfg.to_string()).expect("write cfg");
    }

    /// The disagreements with the reference's outputs in `dir`.
    fn compare(&self, dir: &Path) -> Vec<String> {
        let mut errors = Vec::new();
        let theirs = Tensor::read_npy(dir.join("loss.npy")).expect("read loss");
        let (err, scale) = (max_abs(&(self.ours.detach() - &theirs)), max_abs(&theirs));
        if self.ours.size() != theirs.size() || err > TOL * scale.max(1.0) {
            errors.push(format!(
                "{}: loss {} vs the release's {}",
                self.name,
                self.ours.detach(),
                theirs
            ));
        }
        if self.inputs.is_empty() {
            return errors;
        }
        self.ours.backward();
        for (name, t) in &self.inputs {
            let g_ref = Tensor::read_npy(dir.join(format!("grad_{name}.npy"))).expect("read grad");
            let defined = t.grad().defined();
            if self.no_grad.contains(name) {
                if defined {
                    errors.push(format!(
                        "{}: {name} is behind a stop-gradient but got one",
                        self.name
                    ));
                }
                continue;
            }
            let g = if defined { t.grad() } else { t.zeros_like() };
            let (err, scale) = (max_abs(&(g - &g_ref)), max_abs(&g_ref));
            if err > TOL * scale.max(1.0) {
                errors.push(format!(
                    "{}: gradient of {name} differs by {err:e} (largest entry {scale:e})",
                    self.name
                ));
            }
        }
        errors
    }
}

/// The sub-batch orders and RGP permutations a loss draws from a
/// `ChaCha8Rng` seeded with `seed`, in its order of drawing: per `w_iter`,
/// the sub-batch order, then (RGP) one permutation per whitened matrix.
fn draws(
    seed: u64,
    loss: &WhiteningLoss,
    views: i64,
    m: i64,
    d: i64,
    rgp: bool,
) -> (Tensor, Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut orders = Vec::new();
    let mut perms = Vec::new();
    for _ in 0..loss.w_iter {
        orders.push(Tensor::from_slice(
            &random_sub_batches(m, loss.w_size, &mut rng).expect("split"),
        ));
        if rgp {
            perms.push(random_group_partition(
                views * (m / loss.w_size),
                d,
                &mut rng,
            ));
        }
    }
    let perms = if rgp {
        Tensor::stack(&perms, 0)
    } else {
        Tensor::zeros([1], (Kind::Int64, Device::Cpu))
    };
    (Tensor::stack(&orders, 0), perms)
}

fn whitening_case(
    name: &str,
    shape: [i64; 3],
    loss: WhiteningLoss,
    mut cfg: serde_json::Value,
    seed: i64,
) -> Case {
    let [views, m, d] = shape;
    let h = randn(&shape, seed);
    let rgp = matches!(&loss.transform, ViewTransform::Whiten(w) if w.random_partition);
    let (orders, perms) = draws(7, &loss, views, m, d, rgp);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let epoch = cfg.get("epoch").and_then(|e| e.as_u64()).unwrap_or(0) as usize;
    let ours = loss.loss(&h, epoch, &mut rng).expect("loss");
    cfg["fn"] = json!("whitening");
    cfg["w_size"] = json!(loss.w_size);
    cfg["w_iter"] = json!(loss.w_iter);
    cfg["norm"] = json!(loss.normalized);
    cfg["rand_group"] = json!(rgp);
    let mut case = Case::new(name, cfg, vec![("h", h)], ours);
    case.data = vec![("orders", orders), ("perms", perms)];
    case
}

/// The release's `Whitening2d<kind>(eps=w_eps, axis, minus=1, group)`
/// settings: `axis` 0 is channel whitening, 1 batch whitening (`base/cfg.py`).
fn whiten_cfg(axis: WhiteningAxis, kind: &str, group: i64, w_eps: f64) -> serde_json::Value {
    let axis = match axis {
        WhiteningAxis::Channel => 0,
        WhiteningAxis::Batch => 1,
    };
    json!({"kind": kind, "axis": axis, "group": group, "minus": 1.0, "w_eps": w_eps})
}

fn whitening_cases() -> Vec<Case> {
    use WhiteningAxis::{Batch, Channel};
    let zca = |axis| WhiteningConfig::new(axis, WhiteningKind::Zca);
    let cov = |epoch: u64| {
        let mut cfg = whiten_cfg(Channel, "zca", 2, 0.0);
        cfg["cov_w"] = json!(0.01);
        cfg["cov_stop"] = json!(3);
        cfg["epoch"] = json!(epoch);
        cfg
    };
    let with_cov = |loss: WhiteningLoss| {
        loss.with_covariance(CovarianceTerm {
            weight: 0.01,
            stop_epoch: 3,
            axis: Channel,
        })
    };
    let bw_rgp = WhiteningConfig {
        random_partition: true,
        ..zca(Batch).with_groups(2)
    };
    vec![
        whitening_case(
            "base/methods/cwrgp.py: CW-RGP, 4 views",
            [4, 32, 64],
            WhiteningLoss::whitened(WhiteningConfig::cw_rgp(2), 16),
            whiten_cfg(Channel, "zca", 2, 0.0),
            1,
        ),
        whitening_case(
            "base/methods/cwrgp.py: CW-RGP, d/g = w_size = 32",
            [2, 32, 64],
            WhiteningLoss::whitened(WhiteningConfig::cw_rgp(2), 32),
            whiten_cfg(Channel, "zca", 2, 0.0),
            8,
        ),
        whitening_case(
            "ImageNet/methods/cwrgp.py: w_iter 2, --no_norm, covariance term (epoch 2 < cov_stop 3)",
            [2, 32, 64],
            with_cov(
                WhiteningLoss::whitened(WhiteningConfig::cw_rgp(2), 16)
                    .with_w_iter(2)
                    .with_normalized(false),
            ),
            cov(2),
            2,
        ),
        whitening_case(
            "ImageNet/methods/cwrgp.py: covariance term switched off (epoch 4 >= cov_stop 3)",
            [2, 32, 64],
            with_cov(WhiteningLoss::whitened(WhiteningConfig::cw_rgp(2), 16)),
            cov(4),
            9,
        ),
        whitening_case(
            "base/methods/cwrgp.py --no_rg --w_eps 0.1: CW-GP with shrinkage",
            [3, 32, 64],
            WhiteningLoss::whitened(zca(Channel).with_groups(2).with_eps(0.1), 16),
            whiten_cfg(Channel, "zca", 2, 0.1),
            3,
        ),
        whitening_case(
            "base/methods/cwrgp.py --axis 1: ZCA batch whitening, random groups",
            [2, 64, 16],
            WhiteningLoss::whitened(bw_rgp, 32),
            whiten_cfg(Batch, "zca", 2, 0.0),
            4,
        ),
        whitening_case(
            "base/methods/wmse.py --axis 1 --no_rg: W-MSE",
            [4, 64, 8],
            WhiteningLoss::whitened(WhiteningConfig::w_mse(), 32),
            whiten_cfg(Batch, "cholesky", 1, 0.0),
            5,
        ),
        whitening_case(
            "base/methods/bn.py: Shuffled-DBN, w_iter 2",
            [2, 32, 8],
            WhiteningLoss::shuffled_dbn(16, 1e-5).with_w_iter(2),
            json!({"kind": "bn", "w_eps": 1e-5}),
            6,
        ),
        whitening_case(
            "base/methods/plain.py",
            [3, 16, 8],
            WhiteningLoss::plain(),
            json!({"kind": "plain"}),
            7,
        ),
    ]
}

/// Batch norm in training mode with this weight and bias over the rows of
/// `x: [n, d]` (libtorch's, the op `nn.BatchNorm1d` runs).
fn batch_norm(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Tensor {
    Tensor::batch_norm(
        x,
        Some(weight),
        Some(bias),
        None::<&Tensor>,
        None::<&Tensor>,
        true,
        0.1,
        1e-5,
        false,
    )
}

fn other_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let (a, b) = (randn(&[16, 8], 10), randn(&[16, 8], 11));
    let ours = norm_mse(&a, &b);
    cases.push(Case::new(
        "base/methods/losses.py: norm_mse_loss",
        json!({"fn": "norm_mse"}),
        vec![("a", a), ("b", b)],
        ours,
    ));

    // SimCLR at bn_last's initial state (γ = 1, β = 0): our loss with its
    // own affine-free batch norm.
    let z = randn(&[2, 16, 8], 22);
    let ours = nt_xent(&z, 0.5, true).expect("nt-xent");
    let mut case = Case::new(
        "base/methods/contrastive.py: 2 views, bn_last at its initial state",
        json!({"fn": "contrastive", "tau": 0.5}),
        vec![("z", z)],
        ours,
    );
    let ones = Tensor::ones([8], (Kind::Double, Device::Cpu));
    case.data = vec![("weight", ones.copy()), ("bias", ones.zeros_like())];
    cases.push(case);
    // A trained bn_last (any γ, β) applied by the network: our loss without
    // its own batch norm; the gradients reach z, γ and β.
    let (z, weight, bias) = (randn(&[3, 16, 8], 23), randn(&[8], 24), randn(&[8], 25));
    let normed = batch_norm(&z.view([48, 8]), &weight, &bias).view([3, 16, 8]);
    let ours = nt_xent(&normed, 0.5, false).expect("nt-xent");
    cases.push(Case::new(
        "base/methods/contrastive.py: 3 views, learnable bn_last",
        json!({"fn": "contrastive", "tau": 0.5}),
        vec![("z", z), ("weight", weight), ("bias", bias)],
        ours,
    ));

    let (p, t) = (randn(&[3, 16, 8], 30), randn(&[3, 16, 8], 31));
    let ours = byol_loss(&p, &t).expect("byol");
    let mut byol = Case::new(
        "base/methods/byol.py: 3 views",
        json!({"fn": "byol"}),
        vec![("p", p), ("t", t)],
        ours,
    );
    byol.no_grad = vec!["t"];
    cases.push(byol);

    let (p, z) = (randn(&[2, 16, 8], 40), randn(&[2, 16, 8], 41));
    let ours = simsiam_loss(&p, &z).expect("simsiam");
    let mut simsiam = Case::new(
        "base/methods/simsiam.py",
        json!({"fn": "simsiam"}),
        vec![("p", p), ("z", z)],
        ours,
    );
    simsiam.no_grad = vec!["z"];
    cases.push(simsiam);

    // m = 32 ≠ d = 8: the divisor d of the release's c.div_(len(z1[0])) matters.
    let z = randn(&[2, 32, 8], 50);
    let ours = barlow_twins_loss(&z, 0.008).expect("barlow twins");
    let mut case = Case::new(
        "base/methods/barlow_twins.py: bn at its initial state",
        json!({"fn": "barlow_twins", "lambda": 0.008}),
        vec![("z", z)],
        ours,
    );
    let ones = Tensor::ones([8], (Kind::Double, Device::Cpu));
    case.data = vec![("weight", ones.copy()), ("bias", ones.zeros_like())];
    cases.push(case);
    // A trained bn (any γ, β), applied to each view separately.
    let (z, weight, bias) = (randn(&[2, 32, 8], 51), randn(&[8], 52), randn(&[8], 53));
    let normed = Tensor::stack(
        &[
            batch_norm(&z.get(0), &weight, &bias),
            batch_norm(&z.get(1), &weight, &bias),
        ],
        0,
    );
    let ours = barlow_twins_loss_of_normalized(&normed, 0.008).expect("barlow twins");
    cases.push(Case::new(
        "base/methods/barlow_twins.py: learnable bn per view",
        json!({"fn": "barlow_twins", "lambda": 0.008}),
        vec![("z", z), ("weight", weight), ("bias", bias)],
        ours,
    ));

    // Scaled so that some channels have std < 1 and the hinge is active.
    let scale = Tensor::linspace(0.3, 2.0, 8, (Kind::Double, Device::Cpu));
    let z = (randn(&[2, 32, 8], 60) * scale)
        .detach()
        .set_requires_grad(true);
    let w = VicRegWeights::default();
    let ours = vicreg_loss(&z, &w).expect("vicreg");
    let cfg = json!({"fn": "vicreg", "sim": w.sim, "var": w.var, "cov": w.cov});
    cases.push(Case::new(
        "base/methods/vicreg.py",
        cfg,
        vec![("z", z)],
        ours,
    ));

    let z = randn(&[2, 16, 32], 70);
    let ours = zero_cl_instance_loss(&z).expect("zero-cl");
    cases.push(Case::new(
        "base/methods/zero_icl.py",
        json!({"fn": "zero_icl"}),
        vec![("z", z)],
        ours,
    ));

    // The τ of each of 7 epochs as base/train.py + BYOL.step compute it.
    let taus: Vec<f64> = (0..7).map(|e| byol_tau(e, 7, 0.99)).collect();
    cases.push(Case::new(
        "base/methods/byol.py: BYOL.step(epoch / epochs), 7 epochs",
        json!({"fn": "byol_tau", "tau0": 0.99, "epochs": 7}),
        Vec::new(),
        Tensor::from_slice(&taus),
    ));
    cases
}

fn swav_cases() -> Vec<Case> {
    let (z, c) = (randn(&[3, 16, 8], 80), randn(&[10, 8], 81));
    let p = SwavParams {
        prototypes: 10,
        ..SwavParams::default()
    };
    let ours = swav_loss(&z, &c, &p).expect("swav");
    let cfg = json!({"fn": "swav", "temperature": p.temperature, "epsilon": p.epsilon, "iters": p.sinkhorn_iterations});
    vec![Case::new(
        "swav, 3 views",
        cfg,
        vec![("z", z), ("c", c)],
        ours,
    )]
}

/// Runs `script` (its file name `name`) on every case in one Python
/// process and asserts that all agree with ours.
fn run_reference(cases: &[Case], name: &str, script: &str) {
    let scratch = test_support::scratch_dir();
    let root = scratch.path();
    let dirs: Vec<_> = (0..cases.len())
        .map(|i| root.join(format!("case{i}")))
        .collect();
    for (case, dir) in cases.iter().zip(&dirs) {
        case.write(dir);
    }
    let script_path = root.join(name);
    std::fs::write(&script_path, script).expect("write script");
    let argv: Vec<String> = std::iter::once(script_path.display().to_string())
        .chain(dirs.iter().map(|d| d.display().to_string()))
        .collect();
    let code = format!(
        "import runpy, sys; sys.argv = {argv:?}; runpy.run_path({:?}, run_name='__main__')",
        script_path.display().to_string()
    );
    test_support::run_python(&code, &[]);
    let errors: Vec<String> = cases
        .iter()
        .zip(&dirs)
        .flat_map(|(c, d)| c.compare(d))
        .collect();
    assert!(
        errors.is_empty(),
        "disagreements with {name}:\n{}",
        errors.join("\n")
    );
}

/// CW-RGP (2 and 4 views, d/g = w_size, `w_iter`, plain MSE, ImageNet's
/// covariance term on and off), CW-GP with shrinkage, ZCA batch whitening
/// with random groups, W-MSE, Shuffled-DBN and the plain loss, against
/// the release's `cwrgp.py`, `wmse.py`, `bn.py`, `plain.py` and
/// `whitening.py`.
#[test]
fn whitening_losses_match_the_release_code() {
    run_reference(&whitening_cases(), "release_port.py", RELEASE_PORT);
}

/// norm-MSE, SimCLR (`bn_last` at its start and trained), BYOL (3 views)
/// and its τ schedule, SimSiam, Barlow Twins (`bn` at its start and
/// trained), VICReg and Zero-ICL, against the release's files.
#[test]
fn other_losses_match_the_release_code() {
    run_reference(&other_cases(), "release_port.py", RELEASE_PORT);
}

/// SwAV (3 views), which the release does not have.
#[test]
fn swav_matches_the_torch_reference() {
    run_reference(&swav_cases(), "swav_reference.py", SWAV_REFERENCE);
}
