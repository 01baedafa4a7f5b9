//! Checkpoints: resuming is bit-exact, damaged files are reported by name,
//! mismatches are listed by tensor name, and a failed save never touches
//! the last good checkpoint.

mod common;

use std::path::Path;

use common::{bit_equal, variables};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ssl_models::checkpoint::metadata_path;
use ssl_models::{
    load_checkpoint, BufferUpdate, Checkpoint, CheckpointMetadata, Depth, EmaTarget, Mlp,
    ModelError, Optimizer, OptimizerKind, ProjectionHeadConfig, ResNet, ResNetConfig, RngState,
    Stem,
};
use tch::nn::{self, ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

/// A thin encoder and head, as a BYOL-style online network.
struct Net {
    encoder: ResNet,
    head: Mlp,
}

impl Net {
    fn new(p: &nn::Path<'_>, width: f64) -> Result<Net, ModelError> {
        let encoder = ResNet::new(
            &(p / "encoder"),
            &ResNetConfig::new(Depth::ResNet18, Stem::Cifar).with_width(width),
        )?;
        let head = ProjectionHeadConfig {
            in_dim: encoder.out_dim(),
            hidden_dim: 32,
            out_dim: 16,
            layers: 2,
            batch_norm: true,
        };
        let head = Mlp::projection_head(&(p / "head"), &head)?;
        Ok(Net { encoder, head })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.head.forward_t(&self.encoder.forward_t(x, true), true)
    }
}

/// Everything a training run holds.
struct Run {
    vs: VarStore,
    net: Net,
    target: EmaTarget,
    target_net: Net,
    opt: Optimizer,
    rng: ChaCha8Rng,
}

impl Run {
    fn new(init_seed: i64) -> Run {
        // libtorch's generator is global: under `cargo test` (threads) the
        // seed-then-initialise sequence must not interleave with another test's.
        static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(init_seed);
        let vs = VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), 0.125).expect("net");
        let (target, target_net) =
            EmaTarget::new(&vs, BufferUpdate::Copy, |p| Net::new(p, 0.125)).expect("target");
        let opt = Optimizer::new(OptimizerKind::adam(), 1e-2, 1e-6, &[("", &vs)]).expect("adam");
        Run {
            vs,
            net,
            target,
            target_net,
            opt,
            rng: ChaCha8Rng::seed_from_u64(42),
        }
    }

    /// One BYOL-like step: two noisy views drawn from the run's RNG,
    /// `2 − 2·cos(online(v₁), sg target(v₂))`, Adam, then the EMA update.
    fn step(&mut self) {
        let mut draw = |n: usize| -> Tensor {
            let v: Vec<f32> = (0..n)
                .map(|_| self.rng.random::<f32>() * 2.0 - 1.0)
                .collect();
            Tensor::from_slice(&v)
        };
        let base = draw(8 * 3 * 8 * 8).view([8, 3, 8, 8]);
        let v1 = &base + draw(8 * 3 * 8 * 8).view([8, 3, 8, 8]) * 0.1;
        let v2 = &base + draw(8 * 3 * 8 * 8).view([8, 3, 8, 8]) * 0.1;
        let p = self.net.forward(&v1);
        let z = tch::no_grad(|| self.target_net.forward(&v2));
        let cos = Tensor::cosine_similarity(&p, &z, 1, 1e-8).mean(Kind::Float);
        let loss = cos * -2.0 + 2.0;
        self.opt.backward_step(&loss);
        self.target.update(&self.vs, 0.99).expect("ema");
    }

    fn save(&self, path: &Path, epoch: u64) -> CheckpointMetadata {
        let meta = CheckpointMetadata::new(
            epoch,
            self.opt.step_count() as u64,
            Some(RngState::of(&self.rng)),
            serde_json::json!({"method": "byol", "lr": 1e-2}),
        );
        Checkpoint {
            model: &self.vs,
            optimizer: Some(&self.opt),
            ema: Some(&self.target),
        }
        .save(path, &meta)
        .expect("save")
    }

    fn load(&mut self, path: &Path) -> Result<CheckpointMetadata, ModelError> {
        let meta = load_checkpoint(path, &self.vs, Some(&mut self.opt), Some(&self.target))?;
        if let Some(rng) = &meta.rng {
            self.rng = rng.restore()?;
        }
        Ok(meta)
    }

    /// Every tensor of the state, by part and name.
    fn state(&self) -> Vec<(String, Tensor)> {
        let mut all: Vec<(String, Tensor)> = variables(&self.vs)
            .into_iter()
            .map(|(k, v)| (format!("model/{k}"), v))
            .collect();
        all.extend(
            variables(self.target.var_store())
                .into_iter()
                .map(|(k, v)| (format!("ema/{k}"), v)),
        );
        all.extend(
            self.opt
                .state()
                .into_iter()
                .map(|(k, v)| (format!("optimizer/{k}"), v)),
        );
        all
    }
}

#[test]
fn resume_is_bit_exact_four_steps_equal_two_plus_checkpoint_plus_two() {
    common::single_threaded();
    let dir = test_support::scratch_dir();
    let path = dir.path().join("ckpt.safetensors");

    let mut straight = Run::new(0);
    for _ in 0..4 {
        straight.step();
    }

    let mut first = Run::new(0);
    first.step();
    first.step();
    let written = first.save(&path, 1);
    let first_state: Vec<(String, Tensor)> = first
        .state()
        .into_iter()
        .map(|(k, v)| (k, v.copy()))
        .collect();
    drop(first);

    // A fresh run with other initial weights and RNG: everything must come
    // from the file.
    let mut resumed = Run::new(12345);
    resumed.rng = ChaCha8Rng::seed_from_u64(7);
    let meta = resumed.load(&path).expect("load");
    assert_eq!(meta, written);
    assert_eq!((meta.epoch, meta.step), (1, 2));
    assert_eq!(meta.config["method"], "byol");
    let counts: Vec<(&str, usize)> = meta
        .tensor_counts
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    let model_count = variables(&resumed.vs).len();
    assert_eq!(
        counts,
        [
            ("ema", model_count),
            ("model", model_count),
            ("optimizer", 1 + 2 * resumed.vs.trainable_variables().len())
        ]
    );
    for ((name, loaded), (_, saved)) in resumed.state().iter().zip(&first_state) {
        assert!(bit_equal(loaded, saved), "{name} not restored exactly");
    }
    let sidecar: CheckpointMetadata =
        serde_json::from_slice(&std::fs::read(metadata_path(&path)).expect("sidecar"))
            .expect("sidecar JSON");
    assert_eq!(sidecar, written);

    resumed.step();
    resumed.step();
    let (a, b) = (straight.state(), resumed.state());
    assert_eq!(a.len(), b.len());
    let mut moved = 0;
    for ((name, x), (name_b, y)) in a.iter().zip(&b) {
        assert_eq!(name, name_b);
        assert!(
            bit_equal(x, y),
            "{name}: resumed run differs from the uninterrupted one"
        );
        moved += usize::from(
            !first_state
                .iter()
                .any(|(n, s)| n == name && bit_equal(s, x)),
        );
    }
    assert!(
        moved > 100,
        "the last two steps must change the state ({moved} tensors changed)"
    );
    assert_eq!(
        straight.rng.random::<u64>(),
        resumed.rng.random::<u64>(),
        "RNG position restored"
    );
}

/// Set in the child process of the fresh-process resume test: the
/// checkpoint to resume from and where to write the state after 2 steps.
const CHILD_ENV: &str = "SSL_MODELS_RESUME_CHILD";

/// The protocol literally: 2 steps and a checkpoint here, then a
/// fresh process (this test binary, re-run on this test alone) loads it,
/// takes 2 steps and saves; its state must equal 4 uninterrupted steps bit
/// for bit.
#[test]
fn resume_in_a_fresh_process_is_bit_exact() {
    common::single_threaded();
    if let Ok(paths) = std::env::var(CHILD_ENV) {
        let (input, output) = paths.split_once('|').expect("input|output");
        let mut run = Run::new(777);
        run.load(Path::new(input)).expect("child load");
        run.step();
        run.step();
        run.save(Path::new(output), 2);
        return;
    }
    let dir = test_support::scratch_dir();
    let (input, output) = (
        dir.path().join("two.safetensors"),
        dir.path().join("four.safetensors"),
    );
    let mut first = Run::new(0);
    first.step();
    first.step();
    first.save(&input, 1);

    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "resume_in_a_fresh_process_is_bit_exact",
            "--test-threads",
            "1",
        ])
        .env(
            CHILD_ENV,
            format!("{}|{}", input.display(), output.display()),
        )
        .status()
        .expect("spawn the child process");
    assert!(status.success(), "child process failed: {status}");

    let mut straight = Run::new(0);
    for _ in 0..4 {
        straight.step();
    }
    let mut from_child = Run::new(31);
    let meta = from_child.load(&output).expect("load the child's state");
    assert_eq!(meta.step, 4);
    for ((name, x), (_, y)) in straight.state().iter().zip(&from_child.state()) {
        assert!(bit_equal(x, y), "{name}: fresh-process resume differs");
    }
    assert_eq!(straight.rng.random::<u64>(), from_child.rng.random::<u64>());
}

fn saved_run(dir: &Path) -> (Run, std::path::PathBuf, Vec<u8>) {
    let path = dir.join("good.safetensors");
    let mut run = Run::new(0);
    run.step();
    run.save(&path, 0);
    let bytes = std::fs::read(&path).expect("read");
    (run, path, bytes)
}

fn expect_damaged(run: &mut Run, path: &Path, reason_part: &str) {
    let before: Vec<Tensor> = run.state().iter().map(|(_, v)| v.copy()).collect();
    let err = run.load(path).expect_err("damaged file must not load");
    let msg = err.to_string();
    assert!(matches!(err, ModelError::Damaged { .. }), "{msg}");
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains(reason_part),
        "{msg}"
    );
    for (b, (name, now)) in before.iter().zip(run.state()) {
        assert!(bit_equal(b, &now), "{name} modified by a failed load");
    }
}

#[test]
fn truncated_corrupted_and_foreign_files_are_reported_by_name() {
    common::single_threaded();
    let dir = test_support::scratch_dir();
    let (mut run, _, bytes) = saved_run(dir.path());

    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    expect_damaged(&mut run, &truncated, "not a complete safetensors file");

    let flipped = dir.path().join("flipped.safetensors");
    let mut corrupt = bytes.clone();
    let last = corrupt.len() - 3;
    corrupt[last] ^= 0x40;
    std::fs::write(&flipped, &corrupt).expect("write");
    expect_damaged(&mut run, &flipped, "checksum");

    let foreign = dir.path().join("foreign.safetensors");
    std::fs::write(&foreign, b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ").expect("write");
    expect_damaged(&mut run, &foreign, "safetensors");

    let missing = dir.path().join("missing.safetensors");
    let msg = run.load(&missing).expect_err("missing").to_string();
    assert!(
        msg.contains("cannot read") && msg.contains("missing.safetensors"),
        "{msg}"
    );
}

#[test]
fn a_checkpoint_of_another_network_lists_every_mismatch_by_name() {
    common::single_threaded();
    let dir = test_support::scratch_dir();
    let (_, path, _) = saved_run(dir.path());
    let vs = VarStore::new(Device::Cpu);
    Net::new(&vs.root(), 0.25).expect("wider net");
    let before = variables(&vs)["encoder.conv1.weight"].copy();
    let err = load_checkpoint(&path, &vs, None, None).expect_err("mismatch");
    let msg = err.to_string();
    let ModelError::Mismatch { mismatches, .. } = &err else {
        panic!("{msg}")
    };
    // Every conv, BN vector and head weight whose width changed is named.
    assert!(mismatches.len() > 50, "{msg}");
    assert!(msg.contains("good.safetensors"));
    assert!(
        msg.contains(
            "model: `encoder.conv1.weight`: found shape [8, 3, 3, 3], expected [16, 3, 3, 3]"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("model: `encoder.layer4.1.bn2.running_var`"),
        "{msg}"
    );
    assert!(
        bit_equal(&before, &variables(&vs)["encoder.conv1.weight"]),
        "nothing is loaded on mismatch"
    );

    // A model with a tensor the file lacks, and a file with tensors the model lacks.
    let vs = VarStore::new(Device::Cpu);
    Net::new(&vs.root(), 0.125).expect("net");
    let _ = vs.root().zeros("extra", &[2]);
    let msg = load_checkpoint(&path, &vs, None, None)
        .expect_err("extra")
        .to_string();
    assert!(msg.contains("missing `extra`"), "{msg}");
    let vs = VarStore::new(Device::Cpu);
    ResNet::new(
        &(vs.root() / "encoder"),
        &ResNetConfig::new(Depth::ResNet18, Stem::Cifar).with_width(0.125),
    )
    .expect("enc");
    let msg = load_checkpoint(&path, &vs, None, None)
        .expect_err("head missing")
        .to_string();
    assert!(msg.contains("unexpected `head.0.weight`"), "{msg}");
}

#[test]
fn a_failed_save_leaves_the_last_good_checkpoint_untouched() {
    common::single_threaded();
    let dir = test_support::scratch_dir();
    let (run, path, bytes) = saved_run(dir.path());
    let json = std::fs::read(metadata_path(&path)).expect("sidecar");
    // A model holding a tensor safetensors cannot store: the save fails
    // before anything is renamed into place.
    let _ = run.vs.root().add(
        "phase",
        Tensor::zeros([2], (Kind::ComplexFloat, Device::Cpu)),
        false,
    );
    let meta = CheckpointMetadata::new(9, 9, None, serde_json::Value::Null);
    let err = Checkpoint {
        model: &run.vs,
        optimizer: Some(&run.opt),
        ema: None,
    }
    .save(&path, &meta)
    .expect_err("fails");
    assert!(err.to_string().contains("phase"), "{err}");
    assert_eq!(
        std::fs::read(&path).expect("read"),
        bytes,
        "checkpoint overwritten"
    );
    assert_eq!(
        std::fs::read(metadata_path(&path)).expect("read"),
        json,
        "metadata overwritten"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temporary files left: {leftovers:?}");
}

#[test]
fn rng_state_restores_the_exact_stream_position() {
    common::single_threaded();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    rng.set_stream(5);
    let _: Vec<u32> = (0..37).map(|_| rng.random()).collect();
    let state = RngState::of(&rng);
    let json = serde_json::to_string(&state).expect("json");
    let mut restored = serde_json::from_str::<RngState>(&json)
        .expect("parse")
        .restore()
        .expect("restore");
    let a: Vec<u64> = (0..10).map(|_| rng.random()).collect();
    let b: Vec<u64> = (0..10).map(|_| restored.random()).collect();
    assert_eq!(a, b);
    let bad = RngState {
        seed: "zz".into(),
        ..state
    };
    assert!(bad.restore().is_err());
}
