//! `ssl export RUN_OR_CHECKPOINT --format F -o FILE`: a trained run's
//! weights for other tools.
//!
//! - `safetensors`: every network of the run (`encoder.…` with torchvision
//!   names, `head.…`, and `predictor.…`/`prototypes.…` where the method has
//!   them), without optimiser state: `safetensors.torch.load_file(FILE)`.
//! - `torchvision`: the encoder alone as a torchvision `state_dict` (no
//!   `fc`). With `-o X.pt` a `torch.save` file:
//!   `model.load_state_dict(torch.load("X.pt"), strict=False)` (strict=False
//!   only because the encoder has no `fc`); with `-o X.safetensors` the
//!   same tensors for `safetensors.torch.load_file`. CIFAR-stem encoders
//!   need torchvision's stem replaced first (3×3 `conv1`, no max-pool;
//!   the hint printed says how).
//! - `detectron2`: the encoder as the backbone pickle Detectron2 reads
//!   (MoCo's `convert-pretrain-to-detectron2.py` names), for the transfer
//!   experiments of Table 3 (`MODEL.WEIGHTS FILE.pkl`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use ssl_models::export::{encoder_tensors, export_detectron2, export_encoder};
use tch::Device;

use ssl_train::restore;
use ssl_train::DatasetName;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Every network of the run (encoder, head, ...) as safetensors.
    Safetensors,
    /// The encoder as a torchvision state_dict (.pt for torch.load, or .safetensors).
    Torchvision,
    /// The encoder as a Detectron2 backbone pickle (.pkl).
    Detectron2,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A run directory (runs/<name>) or its checkpoint.safetensors.
    pub path: PathBuf,
    #[arg(long, value_enum)]
    pub format: Format,
    /// The file to write.
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
}

/// What an export wrote.
#[derive(Debug)]
pub struct Exported {
    pub tensors: usize,
    /// How to load it, for the user.
    pub hint: String,
}

pub fn run(args: &ExportArgs) -> Result<()> {
    let e = export(args)?;
    println!(
        "export | {:?} | {} tensors | {}",
        args.format,
        e.tensors,
        args.out.display()
    );
    eprintln!("{}", e.hint);
    Ok(())
}

fn extension(path: &std::path::Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default()
}

pub fn export(args: &ExportArgs) -> Result<Exported> {
    let restored = restore(&args.path, Device::Cpu)?;
    let cfg = &restored.config;
    let vs = &restored.nets.vs;
    let out = &args.out;
    let arch = cfg.model.arch.as_str();
    let stem_channels = vs
        .variables()
        .get("encoder.conv1.weight")
        .map_or(64, |w| w.size()[0]);
    let stem_note = match cfg.data.dataset {
        DatasetName::Imagenet => String::new(),
        DatasetName::Stl10 | DatasetName::TinyImagenet => format!(
            "m.conv1 = torch.nn.Conv2d(3, {stem_channels}, 3, 1, 1, bias=False)  # small-image stem, max-pool kept\n"
        ),
        _ => format!(
            "m.conv1 = torch.nn.Conv2d(3, {stem_channels}, 3, 1, 1, bias=False); \
             m.maxpool = torch.nn.Identity()  # CIFAR stem\n"
        ),
    };
    if args.format != Format::Safetensors && cfg.model.width != 1.0 {
        eprintln!(
            "warning: model.width = {}: the encoder's channel counts are not torchvision's {arch}, \
             so torchvision/Detectron2 will not load it without the same width",
            cfg.model.width
        );
    }
    let torchvision_hint = |load: &str| {
        format!(
            "load with:\nimport torch, torchvision\nm = torchvision.models.{arch}()\n{stem_note}\
             missing, unexpected = m.load_state_dict({load}, strict=False)  # missing: fc.weight, fc.bias only"
        )
    };
    let (tensors, hint) = match args.format {
        Format::Safetensors => {
            if extension(out) != "safetensors" {
                bail!(
                    "--format safetensors writes a .safetensors file: got {}",
                    out.display()
                );
            }
            let n = export_encoder(vs, "", out)?;
            (
                n,
                "load with: from safetensors.torch import load_file; tensors = load_file(FILE) \
                 (names encoder.<torchvision name>, head.<i>.…)"
                    .replace("FILE", &format!("{:?}", out.display().to_string())),
            )
        }
        Format::Torchvision => match extension(out).as_str() {
            "pt" | "pth" => {
                let t = encoder_tensors(vs, "encoder.");
                ssl_models::torch_save::save(&t, out)
                    .with_context(|| format!("writing {}", out.display()))?;
                (
                    t.len(),
                    torchvision_hint(&format!("torch.load({:?})", out.display().to_string())),
                )
            }
            "safetensors" => (
                export_encoder(vs, "encoder.", out)?,
                torchvision_hint(&format!(
                    "__import__('safetensors.torch').torch.load_file({:?})",
                    out.display().to_string()
                )),
            ),
            _ => bail!(
                "--format torchvision writes FILE.pt (torch.load) or FILE.safetensors: got {}",
                out.display()
            ),
        },
        Format::Detectron2 => {
            if extension(out) != "pkl" {
                bail!(
                    "--format detectron2 writes a .pkl file (Detectron2's MODEL.WEIGHTS): got {}",
                    out.display()
                );
            }
            let n = export_detectron2(vs, "encoder.", "whitening-ssl", out)?;
            (
                n,
                format!(
                    "use with Detectron2: MODEL.WEIGHTS {} (backbone in MoCo's converted names; \
                     set MODEL.PIXEL_MEAN/STD and INPUT.FORMAT as MoCo's configs do)",
                    out.display()
                ),
            )
        }
    };
    Ok(Exported { tensors, hint })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssl_models::{Checkpoint, CheckpointMetadata};
    use ssl_train::Networks;
    use tch::{Kind, Tensor};

    /// Loads each export into torchvision's own resnet18 (CIFAR stem set as
    /// the peer baseline sets it, `fc` = Identity) and runs it on the same
    /// input as our encoder: keys, shapes and outputs must agree.
    const CHECK: &str = r#"
import sys, json, struct, pickle, numpy as np, torch, torchvision
pt, st, pkl, x_path = sys.argv[1:5]
x = torch.from_numpy(np.load(x_path))
def fresh():
    m = torchvision.models.resnet18()
    m.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    m.maxpool = torch.nn.Identity()
    return m
tv = fresh().state_dict()
def run(sd):
    m = fresh()
    shapes_ok = all(tuple(sd[k].shape) == tuple(tv[k].shape) for k in sd if k in tv)
    missing, unexpected = m.load_state_dict(sd, strict=False)
    m.fc = torch.nn.Identity()
    m.eval()
    with torch.no_grad():
        y = m(x)
    return {"missing": sorted(missing), "unexpected": sorted(unexpected), "shapes_ok": shapes_ok,
            "y": y.flatten().tolist()}
out = {"pt": run(torch.load(pt))}
raw = open(st, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n]); header.pop("__metadata__", None)
dt = {"F32": np.float32, "I64": np.int64}
sd = {k: torch.from_numpy(np.frombuffer(raw[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]], dtype=dt[v["dtype"]]).reshape(v["shape"]).copy())
      for k, v in header.items()}
out["safetensors"] = run(sd)
d2 = pickle.load(open(pkl, "rb"), encoding="latin1")["model"]
def moco(k):
    if "layer" not in k:
        k = "stem." + k
    for t in [1, 2, 3, 4]:
        k = k.replace("layer{}".format(t), "res{}".format(t + 1))
    for t in [1, 2, 3]:
        k = k.replace("bn{}".format(t), "conv{}.norm".format(t))
    return k.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")
back = {k: torch.from_numpy(d2[moco(k)]) for k in tv if not k.startswith("fc.") and moco(k) in d2}
out["detectron2"] = run(back)
out["detectron2"]["count"] = len(d2)
print(json.dumps(out))
"#;

    #[test]
    fn exports_load_into_torchvision_resnet18_with_the_same_output() {
        let dir = test_support::scratch_dir();
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        // A full-width ResNet-18 (CIFAR stem) as the CIFAR presets train it.
        let cfg = crate::presets::resolve(Some("synthetic/cw-rgp-demo"), &["model.width=1".into()])
            .unwrap();
        tch::manual_seed(3);
        let nets = Networks::new(&cfg, Device::Cpu).unwrap();
        // Non-trivial batch-norm statistics, so eval mode is really tested.
        tch::no_grad(|| {
            for (name, mut t) in nets.vs.variables() {
                if name.ends_with("running_mean") {
                    t.copy_(&(Tensor::randn_like(&t) * 0.1));
                } else if name.ends_with("running_var") {
                    t.copy_(&(Tensor::rand_like(&t) + 0.5));
                } else if name.ends_with("num_batches_tracked") {
                    let _ = t.fill_(7);
                }
            }
        });
        let meta = CheckpointMetadata::new(1, 10, None, serde_json::to_value(&cfg).unwrap());
        Checkpoint {
            model: &nets.vs,
            optimizer: None,
            ema: None,
        }
        .save(&ssl_train::checkpoint_path(&run), &meta)
        .unwrap();
        let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let ours =
            Vec::<f32>::try_from(tch::no_grad(|| nets.encoder.forward_t(&x, false)).flatten(0, -1))
                .unwrap();
        let x_path = dir.path().join("x.npy");
        x.write_npy(&x_path).unwrap();
        let file = |name: &str| dir.path().join(name);
        let mut counts = Vec::new();
        for (format, name) in [
            (Format::Torchvision, "encoder.pt"),
            (Format::Torchvision, "encoder.safetensors"),
            (Format::Detectron2, "backbone.pkl"),
            (Format::Safetensors, "all.safetensors"),
        ] {
            let e = export(&ExportArgs {
                path: run.clone(),
                format,
                out: file(name),
            })
            .unwrap();
            counts.push(e.tensors);
        }
        // 120: the 122 entries of torchvision resnet18's state_dict minus fc.weight, fc.bias.
        assert_eq!(&counts[..3], &[120, 120, 120]);
        assert!(counts[3] > 120, "the whole run also has the head");
        let report = test_support::run_python(
            CHECK,
            &[
                file("encoder.pt").to_str().unwrap(),
                file("encoder.safetensors").to_str().unwrap(),
                file("backbone.pkl").to_str().unwrap(),
                x_path.to_str().unwrap(),
            ],
        );
        let r: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
        for which in ["pt", "safetensors", "detectron2"] {
            let v = &r[which];
            assert_eq!(
                v["missing"],
                serde_json::json!(["fc.bias", "fc.weight"]),
                "{which}: only fc may be missing"
            );
            assert_eq!(v["unexpected"], serde_json::json!([]), "{which}");
            assert_eq!(v["shapes_ok"], true, "{which}");
            let y: Vec<f64> = serde_json::from_value(v["y"].clone()).unwrap();
            assert_eq!(y.len(), ours.len(), "{which}");
            let worst = y
                .iter()
                .zip(&ours)
                .map(|(a, b)| (a - *b as f64).abs())
                .fold(0.0, f64::max);
            // Same weights, same kernels: float32 rounding only.
            assert!(worst < 1e-4, "{which}: outputs differ by {worst}");
        }
        assert_eq!(r["detectron2"]["count"], 120);
        // Wrong extensions are refused before anything is written.
        let err = export(&ExportArgs {
            path: run.clone(),
            format: Format::Detectron2,
            out: file("backbone.pt"),
        })
        .unwrap_err();
        assert!(err.to_string().contains(".pkl"), "{err}");
    }
}
