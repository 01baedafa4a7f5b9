//! Table 3: transfer of the 200-epoch ImageNet CW-RGP backbone to detection
//! with Detectron2, MoCo's recipe (`docs/reference.md` §7.6): Faster R-CNN
//! R50-C4 on VOC 07+12 (tested on VOC07), Mask R-CNN R50-C4 with the 1×
//! schedule on COCO, three seeds each, AP50 / AP / AP75 as mean ± std.
//!
//! Steps: `ssl export CHECKPOINT --format detectron2 -o W.pkl` (the backbone
//! with Detectron2's names, as MoCo's `convert-pretrain-to-detectron2.py`
//! writes it); the configs of MoCo's `detection/configs/` (the C4 base with
//! SyncBN and the extra res5 norm, unfrozen stem, torchvision's RGB mean/std
//! in 0–255 units, `STRIDE_IN_1X1: False`); our `train_net.py`, which
//! registers `Res5ROIHeadsExtraNorm` and writes `final_results.json`;
//! then one Detectron2 run per benchmark and seed under
//! `<out>/table3/<bench>/seed<k>/`, resumed with `--resume`, skipped once
//! `final_results.json` exists.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::paper::{self, Ap};
use super::ReproduceArgs;

/// MoCo's `Base-RCNN-C4-BN.yaml`: R50-C4 with SyncBN everywhere (backbone
/// and the extra norm after res5), nothing frozen, precise BN at test time.
/// (MoCo later switched NORM to "naiveSyncBN"; the paper's runs predate it.)
pub const BASE_C4_BN: &str = r#"MODEL:
  META_ARCHITECTURE: "GeneralizedRCNN"
  RPN:
    PRE_NMS_TOPK_TEST: 6000
    POST_NMS_TOPK_TEST: 1000
  ROI_HEADS:
    NAME: "Res5ROIHeadsExtraNorm"
  BACKBONE:
    FREEZE_AT: 0
  RESNETS:
    NORM: "SyncBN"
TEST:
  PRECISE_BN:
    ENABLED: True
SOLVER:
  IMS_PER_BATCH: 16
  BASE_LR: 0.02
"#;

/// MoCo's `pascal_voc_R_50_C4_24k.yaml`: Faster R-CNN, 20 classes, VOC
/// 2007+2012 trainval, tested on VOC 2007 test, 24k iterations.
pub const VOC_24K: &str = r#"_BASE_: "Base-RCNN-C4-BN.yaml"
MODEL:
  MASK_ON: False
  WEIGHTS: "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
  ROI_HEADS:
    NUM_CLASSES: 20
INPUT:
  MIN_SIZE_TRAIN: (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)
  MIN_SIZE_TEST: 800
DATASETS:
  TRAIN: ('voc_2007_trainval', 'voc_2012_trainval')
  TEST: ('voc_2007_test',)
SOLVER:
  STEPS: (18000, 22000)
  MAX_ITER: 24000
  WARMUP_ITERS: 100
"#;

/// Mask R-CNN R50-C4 on COCO 2017 with the 1× schedule (`docs/reference.md`
/// §7.6): MoCo's `coco_R_50_C4_2x.yaml` with Detectron2's 1× schedule (90k
/// iterations, steps at 60k and 80k, 16 images per batch).
pub const COCO_1X: &str = r#"_BASE_: "Base-RCNN-C4-BN.yaml"
MODEL:
  MASK_ON: True
  WEIGHTS: "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
INPUT:
  MIN_SIZE_TRAIN: (640, 672, 704, 736, 768, 800)
  MIN_SIZE_TEST: 800
DATASETS:
  TRAIN: ("coco_2017_train",)
  TEST: ("coco_2017_val",)
SOLVER:
  STEPS: (60000, 80000)
  MAX_ITER: 90000
"#;

/// What MoCo's `*_moco.yaml` add for a torchvision-style backbone: RGB
/// input normalised with torchvision's mean/std (×255), the stride in the
/// 3×3 convolution (torchvision's ResNet v1.5), and our weights.
fn ssl_overlay(base: &str, weights: &Path) -> String {
    let w = weights
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        r#"_BASE_: "{base}"
MODEL:
  PIXEL_MEAN: [123.675, 116.280, 103.530]
  PIXEL_STD: [58.395, 57.120, 57.375]
  WEIGHTS: "{w}"
  RESNETS:
    STRIDE_IN_1X1: False
INPUT:
  FORMAT: "RGB"
"#
    )
}

/// Our Detectron2 launcher: MoCo's recipe as a Detectron2 `DefaultTrainer`
/// (the extra norm after res5 in the C4 box head, COCO and VOC evaluators),
/// then the final evaluation written to `OUTPUT_DIR/final_results.json`.
pub const TRAIN_NET_PY: &str = r#"#!/usr/bin/env python3
"""Detectron2 fine-tuning for Table 3, written by `cargo xtask reproduce --table 3`.

MoCo's detection recipe: the R50-C4 box head gets a normalisation layer after
res5 (Res5ROIHeadsExtraNorm); COCO runs use the COCO evaluator (boxes and masks),
VOC runs the VOC 2007 evaluator. The last evaluation is written atomically to
OUTPUT_DIR/final_results.json, which the xtask collects.
"""
import json
import os

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator
from detectron2.layers import get_norm
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads
from detectron2.utils import comm


@ROI_HEADS_REGISTRY.register()
class Res5ROIHeadsExtraNorm(Res5ROIHeads):
    """Res5ROIHeads with one more normalisation layer after the res5 stage."""

    def __init__(self, cfg, input_shape):
        super().__init__(cfg, input_shape)
        channels = self.res5[-1].out_channels
        self.res5.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, channels))


class Trainer(DefaultTrainer):
    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
        if "coco" in dataset_name:
            return COCOEvaluator(dataset_name, cfg, True, folder)
        if "voc" in dataset_name:
            return PascalVOCDetectionEvaluator(dataset_name)
        raise ValueError("no evaluator for dataset " + dataset_name)


def write_results(cfg, results):
    if not comm.is_main_process():
        return
    path = os.path.join(cfg.OUTPUT_DIR, "final_results.json")
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=2, default=float)
    os.replace(path + ".tmp", path)


def main(args):
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = Trainer.test(cfg, model)
    else:
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        trainer.train()
        results = getattr(trainer, "_last_eval_results", None) or Trainer.test(cfg, trainer.model)
    write_results(cfg, results)
    return results


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
"#;

/// One transfer benchmark.
#[derive(Debug, Clone, Copy)]
pub struct Bench {
    pub key: &'static str,
    pub title: &'static str,
    /// The config `train_net.py` is given.
    pub config: &'static str,
    /// Detectron2 result groups reported: ("bbox", title), ("segm", title).
    pub tasks: &'static [(&'static str, &'static str)],
}

pub const BENCHES: [Bench; 2] = [
    Bench {
        key: "voc",
        title: "VOC07+12 detection (Faster R-CNN R50-C4, 24k)",
        config: "pascal_voc_R_50_C4_24k_ssl.yaml",
        tasks: &[("bbox", "VOC07+12 det")],
    },
    Bench {
        key: "coco",
        title: "COCO detection and instance segmentation (Mask R-CNN R50-C4, 1x)",
        config: "coco_R_50_C4_1x_ssl.yaml",
        tasks: &[("bbox", "COCO det"), ("segm", "COCO inst. seg.")],
    },
];

/// Writes the configs and `train_net.py` into `dir`; returns their paths.
pub fn write_configs(dir: &Path, weights: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = [
        ("Base-RCNN-C4-BN.yaml", BASE_C4_BN.to_string()),
        ("pascal_voc_R_50_C4_24k.yaml", VOC_24K.to_string()),
        (
            "pascal_voc_R_50_C4_24k_ssl.yaml",
            ssl_overlay("pascal_voc_R_50_C4_24k.yaml", weights),
        ),
        ("coco_R_50_C4_1x.yaml", COCO_1X.to_string()),
        (
            "coco_R_50_C4_1x_ssl.yaml",
            ssl_overlay("coco_R_50_C4_1x.yaml", weights),
        ),
        ("train_net.py", TRAIN_NET_PY.to_string()),
    ];
    let mut out = Vec::new();
    for (name, text) in files {
        let p = dir.join(name);
        crate::download::atomic_write(&p, text.as_bytes())?;
        out.push(p);
    }
    Ok(out)
}

/// The Detectron2 command of one benchmark and seed.
pub fn train_command(
    python: &str,
    configs: &Path,
    bench: &Bench,
    seed: usize,
    run_dir: &Path,
    gpus: usize,
    datasets: &Path,
) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg(configs.join("train_net.py"))
        .arg("--config-file")
        .arg(configs.join(bench.config))
        .args(["--num-gpus", &gpus.to_string(), "--resume"])
        .args(["SEED", &seed.to_string()])
        .arg("OUTPUT_DIR")
        .arg(run_dir)
        .env("DETECTRON2_DATASETS", datasets);
    cmd
}

/// Paths a Detectron2 run of the two benchmarks reads under
/// DETECTRON2_DATASETS (Detectron2's `datasets/README.md` layout).
pub const DATASET_PATHS: &[&str] = &[
    "VOC2007/Annotations",
    "VOC2007/ImageSets/Main",
    "VOC2007/JPEGImages",
    "VOC2012/Annotations",
    "VOC2012/ImageSets/Main",
    "VOC2012/JPEGImages",
    "coco/annotations/instances_train2017.json",
    "coco/annotations/instances_val2017.json",
    "coco/train2017",
    "coco/val2017",
];

/// The `--check` report: every requirement, found or not, with how to get
/// what is missing. Returns (report, number missing).
pub fn check(
    python: &str,
    datasets: &Path,
    checkpoint: &Path,
    ssl: Option<&Path>,
) -> (String, usize) {
    let mut s = String::from("Table 3 (transfer to detection) needs:\n");
    let mut missing = 0;
    let mut item = |ok: bool, what: String, fix: &str| {
        let _ = writeln!(s, "  [{}] {what}", if ok { "ok" } else { "MISSING" });
        if !ok {
            missing += 1;
            let _ = writeln!(s, "        {fix}");
        }
    };
    let probe = Command::new(python)
        .args([
            "-c",
            "import torch, detectron2; print(detectron2.__version__, torch.__version__, \
             torch.cuda.device_count())",
        ])
        .output();
    match probe {
        Ok(o) if o.status.success() => {
            let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let gpus: usize = v
                .split_whitespace()
                .nth(2)
                .and_then(|g| g.parse().ok())
                .unwrap_or(0);
            item(
                true,
                format!("Detectron2 in {python} (detectron2, torch, GPUs: {v})"),
                "",
            );
            item(
                gpus > 0,
                format!("CUDA GPUs visible to {python}: {gpus}"),
                "Detectron2's SyncBN runs need CUDA GPUs (the recipe: 8 GPUs, 16 images per batch)",
            );
        }
        Ok(o) => item(
            false,
            format!(
                "Detectron2 in {python}: {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("import failed")
            ),
            &format!(
                "install PyTorch with CUDA, then `{python} -m pip install \
                 'git+https://github.com/facebookresearch/detectron2.git'` (a C++/CUDA build; \
                 see Detectron2's INSTALL.md); or point --python / DETECTRON2_PYTHON at a \
                 Python that has it"
            ),
        ),
        Err(e) => item(
            false,
            format!("a Python at `{python}`: {e}"),
            "install Python 3 (or pass --python PATH), PyTorch with CUDA, then `python3 -m \
             pip install 'git+https://github.com/facebookresearch/detectron2.git'`",
        ),
    }
    let absent: Vec<&str> = DATASET_PATHS
        .iter()
        .copied()
        .filter(|p| !datasets.join(p).exists())
        .collect();
    item(
        absent.is_empty(),
        if absent.is_empty() {
            format!("VOC 2007/2012 and COCO 2017 under {}", datasets.display())
        } else {
            format!(
                "under {}: {} (of {} paths)",
                datasets.display(),
                absent.join(", "),
                DATASET_PATHS.len()
            )
        },
        "Pascal VOC 2007 + 2012 and COCO 2017 in Detectron2's layout (its datasets/README.md) \
         under --data or DETECTRON2_DATASETS",
    );
    item(
        checkpoint.is_file(),
        format!("the pre-trained checkpoint {}", checkpoint.display()),
        "pre-train it with `cargo xtask reproduce --table 2 --methods cw-rgp-4-200ep`, or pass \
         --checkpoint",
    );
    if let Some(ssl) = ssl {
        item(
            super::ssl_has_subcommand(ssl, "export"),
            format!("`ssl export` in {}", ssl.display()),
            "this ssl predates `ssl export --format detectron2`: update and rebuild ssl-cli",
        );
    }
    (s, missing)
}

/// AP50, AP, AP75 over seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub mean: [f64; 3],
    /// Sample standard deviation (n − 1); 0 for one seed.
    pub std: [f64; 3],
}

pub fn summarise(values: &[[f64; 3]]) -> Option<Summary> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mut mean = [0.0; 3];
    let mut std = [0.0; 3];
    for i in 0..3 {
        mean[i] = values.iter().map(|v| v[i]).sum::<f64>() / n as f64;
        if n > 1 {
            let ss: f64 = values.iter().map(|v| (v[i] - mean[i]).powi(2)).sum();
            std[i] = (ss / (n - 1) as f64).sqrt();
        }
    }
    Some(Summary { n, mean, std })
}

/// (AP50, AP, AP75) of one task (`bbox`/`segm`) of a `final_results.json`.
pub fn read_final(path: &Path, task: &str) -> Option<[f64; 3]> {
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(path).ok()?).ok()?;
    let t = v.get(task)?;
    let g = |k: &str| t.get(k).and_then(|x| x.as_f64());
    Some([g("AP50")?, g("AP")?, g("AP75")?])
}

/// `+x.x` with one decimal, never `-0.0`.
fn signed1(x: f64) -> String {
    let r = (x * 10.0).round() / 10.0;
    format!("{:+.1}", if r == 0.0 { 0.0 } else { r })
}

fn seed_dir(root: &Path, bench: &Bench, seed: usize) -> PathBuf {
    root.join(bench.key).join(format!("seed{seed}"))
}

/// Collects every seed's results under `table3_dir` and writes
/// `table3.md` / `table3.csv` into `out`.
pub fn write_table3(out: &Path, table3_dir: &Path, seeds: usize) -> Result<Vec<PathBuf>> {
    let published = paper::table3_cw_rgp();
    let mut md = String::from(
        "# Table 3: transfer to detection (200-epoch ImageNet pre-training), AP50 / AP / AP75\n\n\
         Paper: the paper's Table 3 (docs/reference.md §8.4, CW-RGP row, mean ± std). \
         Ours: Detectron2 with MoCo's recipe, mean ± sample std over the seeds that finished. \
         Δ = ours − paper (means).\n\n\
         | benchmark | metric | paper | ours | Δ | seeds |\n|---|---|---:|---:|---:|---:|\n",
    );
    let mut csv =
        String::from("benchmark,metric,paper_mean,paper_std,ours_mean,ours_std,diff,seeds\n");
    for bench in &BENCHES {
        for &(task, title) in bench.tasks {
            let values: Vec<[f64; 3]> = (0..seeds)
                .filter_map(|s| {
                    read_final(
                        &seed_dir(table3_dir, bench, s).join("final_results.json"),
                        task,
                    )
                })
                .collect();
            let ours = summarise(&values);
            let p: &Ap = match (bench.key, task) {
                ("voc", _) => &published.voc,
                (_, "bbox") => &published.coco_det,
                _ => &published.coco_seg,
            };
            let pv = [p.ap50, p.ap, p.ap75];
            let ps = p.std.map(|s| [s.0, s.1, s.2]);
            for (i, metric) in ["AP50", "AP", "AP75"].into_iter().enumerate() {
                let paper_cell = match ps {
                    Some(s) => format!("{:.1} ± {:.2}", pv[i], s[i]),
                    None => format!("{:.1}", pv[i]),
                };
                let (ours_cell, d) = match &ours {
                    Some(o) => (
                        format!("{:.1} ± {:.2}", o.mean[i], o.std[i]),
                        signed1(o.mean[i] - pv[i]),
                    ),
                    None => ("–".into(), "–".into()),
                };
                let _ = writeln!(
                    md,
                    "| {title} | {metric} | {paper_cell} | {ours_cell} | {d} | {} |",
                    ours.as_ref().map_or(0, |o| o.n)
                );
                let _ = writeln!(
                    csv,
                    "{title},{metric},{},{},{},{},{},{}",
                    pv[i],
                    ps.map_or(String::new(), |s| s[i].to_string()),
                    ours.as_ref()
                        .map_or(String::new(), |o| format!("{:.4}", o.mean[i])),
                    ours.as_ref()
                        .map_or(String::new(), |o| format!("{:.4}", o.std[i])),
                    ours.as_ref()
                        .map_or(String::new(), |o| format!("{:.4}", o.mean[i] - pv[i])),
                    ours.as_ref().map_or(0, |o| o.n)
                );
            }
        }
    }
    md.push_str("\nThe paper's other rows (VOC det · COCO det · COCO seg, AP50/AP/AP75):\n\n");
    for r in paper::TABLE3 {
        let f = |a: &Ap| format!("{:.1}/{:.1}/{:.1}", a.ap50, a.ap, a.ap75);
        let _ = writeln!(
            md,
            "- {}: {} · {} · {}",
            r.label,
            f(&r.voc),
            f(&r.coco_det),
            f(&r.coco_seg)
        );
    }
    fs::create_dir_all(out)?;
    let md_path = out.join("table3.md");
    let csv_path = out.join("table3.csv");
    crate::download::atomic_write(&md_path, md.as_bytes())?;
    crate::download::atomic_write(&csv_path, csv.as_bytes())?;
    Ok(vec![md_path, csv_path])
}

pub fn run(root: &Path, out: &Path, args: &ReproduceArgs) -> Result<()> {
    let table3 = out.join("table3");
    let configs = table3.join("configs");
    let weights = table3.join("cw-rgp-4-200ep-detectron2.pkl");
    let checkpoint = match &args.checkpoint {
        Some(c) => super::absolute(root, c),
        None => out.join("runs/imagenet/cw-rgp-4-200ep/checkpoint.safetensors"),
    };
    let datasets = match &args.data {
        Some(d) => super::absolute(root, d),
        None => std::env::var_os("DETECTRON2_DATASETS")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("datasets")),
    };
    let python = args.python.as_deref().unwrap_or("python3");
    let commands: Vec<(Bench, usize, PathBuf, Command)> = BENCHES
        .iter()
        .flat_map(|b| (0..args.seeds).map(move |s| (*b, s)))
        .map(|(b, s)| {
            let dir = seed_dir(&table3, &b, s);
            let cmd = train_command(python, &configs, &b, s, &dir, args.gpus, &datasets);
            (b, s, dir, cmd)
        })
        .collect();
    let export_line = format!(
        "ssl export {} --format detectron2 -o {}",
        checkpoint.display(),
        weights.display()
    );
    if args.dry_run {
        println!("# configs and train_net.py -> {}", configs.display());
        println!("{export_line}");
        for (b, s, _, cmd) in &commands {
            println!("# {} seed {s}", b.title);
            println!(
                "DETECTRON2_DATASETS={} {}",
                datasets.display(),
                super::runs::display_command(cmd)
            );
        }
        return Ok(());
    }
    let ssl = args.ssl.as_ref().map(|p| super::absolute(root, p));
    if args.check {
        let (report, missing) = check(python, &datasets, &checkpoint, ssl.as_deref());
        print!("{report}");
        if missing > 0 {
            bail!("{missing} requirement(s) of Table 3 missing (see above)");
        }
        println!("everything Table 3 needs is in place");
        return Ok(());
    }
    write_configs(&configs, &weights)?;
    let export = |ssl: Option<PathBuf>| -> Result<()> {
        if weights.exists() {
            return Ok(());
        }
        if !checkpoint.is_file() {
            bail!(
                "no checkpoint at {}: pre-train it with `cargo xtask reproduce --table 2 \
                 --methods cw-rgp-4-200ep`, or pass --checkpoint",
                checkpoint.display()
            );
        }
        let ssl = match ssl {
            Some(s) => s,
            None => super::ssl_binary(root, args)?,
        };
        let mut cmd = Command::new(&ssl);
        cmd.arg("export")
            .arg(&checkpoint)
            .args(["--format", "detectron2", "-o"])
            .arg(&weights);
        eprintln!("reproduce | {}", super::runs::display_command(&cmd));
        let status = cmd.status().context("starting ssl export")?;
        if !status.success() {
            bail!("ssl export failed ({status})");
        }
        Ok(())
    };
    if args.export_only {
        export(ssl)?;
        println!("backbone: {}", weights.display());
        println!("configs and train_net.py: {}", configs.display());
        for (_, _, _, cmd) in &commands {
            println!(
                "DETECTRON2_DATASETS={} {}",
                datasets.display(),
                super::runs::display_command(cmd)
            );
        }
        return Ok(());
    }
    let pending = commands
        .iter()
        .any(|(_, _, dir, _)| !dir.join("final_results.json").exists());
    if pending {
        let (report, missing) = check(python, &datasets, &checkpoint, None);
        if missing > 0 {
            eprint!("{report}");
            bail!(
                "{missing} requirement(s) of Table 3 missing (see above; `--check` repeats this)"
            );
        }
        export(ssl)?;
    }
    let mut failed = Vec::new();
    for (b, s, dir, mut cmd) in commands {
        if dir.join("final_results.json").exists() {
            eprintln!("reproduce | {} seed {s}: finished earlier, skipped", b.key);
            continue;
        }
        fs::create_dir_all(&dir)?;
        eprintln!("reproduce | {}", super::runs::display_command(&cmd));
        let status = cmd.status().context("starting Detectron2's train_net.py")?;
        if !status.success() {
            eprintln!("reproduce | {} seed {s} failed ({status})", b.key);
            failed.push(format!("{} seed {s}", b.key));
        }
    }
    for p in write_table3(out, &table3, args.seeds)? {
        eprintln!("reproduce | wrote {}", p.display());
    }
    if !failed.is_empty() {
        bail!("Detectron2 runs failed: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads a config the way Detectron2 does: `_BASE_` first (relative to
    /// the file), then the file's keys merged over it.
    fn load(path: &Path) -> serde_yaml::Value {
        let text = fs::read_to_string(path).unwrap();
        let mut v: serde_yaml::Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
        let base = v
            .as_mapping_mut()
            .unwrap()
            .remove("_BASE_")
            .map(|b| b.as_str().unwrap().to_string());
        match base {
            Some(b) => {
                let mut merged = load(&path.parent().unwrap().join(b));
                merge(&mut merged, v);
                merged
            }
            None => v,
        }
    }

    fn merge(base: &mut serde_yaml::Value, over: serde_yaml::Value) {
        match (base, over) {
            (serde_yaml::Value::Mapping(b), serde_yaml::Value::Mapping(o)) => {
                for (k, v) in o {
                    match b.get_mut(&k) {
                        Some(slot) => merge(slot, v),
                        None => {
                            b.insert(k, v);
                        }
                    }
                }
            }
            (slot, v) => *slot = v,
        }
    }

    fn at<'a>(v: &'a serde_yaml::Value, key: &str) -> &'a serde_yaml::Value {
        key.split('.').fold(v, |v, k| {
            v.get(k)
                .unwrap_or_else(|| panic!("key {key} missing (at {k})"))
        })
    }

    fn floats(v: &serde_yaml::Value) -> Vec<f64> {
        v.as_sequence()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    }

    #[test]
    fn configs_are_moco_recipe_with_our_weights() {
        let dir = tempfile::tempdir().unwrap();
        let weights = dir.path().join("w \"x\".pkl");
        write_configs(dir.path(), &weights).unwrap();
        for bench in &BENCHES {
            let cfg = load(&dir.path().join(bench.config));
            assert_eq!(
                at(&cfg, "MODEL.WEIGHTS").as_str().unwrap(),
                weights.to_str().unwrap()
            );
            // torchvision's normalisation in 0–255 units, RGB input.
            assert_eq!(
                floats(at(&cfg, "MODEL.PIXEL_MEAN")),
                [123.675, 116.28, 103.53]
            );
            assert_eq!(floats(at(&cfg, "MODEL.PIXEL_STD")), [58.395, 57.12, 57.375]);
            assert_eq!(at(&cfg, "INPUT.FORMAT").as_str(), Some("RGB"));
            assert_eq!(
                at(&cfg, "MODEL.RESNETS.STRIDE_IN_1X1").as_bool(),
                Some(false)
            );
            assert_eq!(at(&cfg, "MODEL.RESNETS.NORM").as_str(), Some("SyncBN"));
            assert_eq!(
                at(&cfg, "MODEL.ROI_HEADS.NAME").as_str(),
                Some("Res5ROIHeadsExtraNorm")
            );
            assert_eq!(at(&cfg, "MODEL.BACKBONE.FREEZE_AT").as_i64(), Some(0));
            assert_eq!(
                at(&cfg, "MODEL.META_ARCHITECTURE").as_str(),
                Some("GeneralizedRCNN")
            );
            assert_eq!(at(&cfg, "TEST.PRECISE_BN.ENABLED").as_bool(), Some(true));
            assert_eq!(at(&cfg, "SOLVER.IMS_PER_BATCH").as_i64(), Some(16));
            assert_eq!(at(&cfg, "SOLVER.BASE_LR").as_f64(), Some(0.02));
        }
        let voc = load(&dir.path().join("pascal_voc_R_50_C4_24k_ssl.yaml"));
        assert_eq!(at(&voc, "MODEL.MASK_ON").as_bool(), Some(false));
        assert_eq!(at(&voc, "MODEL.ROI_HEADS.NUM_CLASSES").as_i64(), Some(20));
        assert_eq!(at(&voc, "SOLVER.MAX_ITER").as_i64(), Some(24000));
        assert_eq!(
            at(&voc, "DATASETS.TRAIN").as_str(),
            Some("('voc_2007_trainval', 'voc_2012_trainval')")
        );
        assert_eq!(
            at(&voc, "DATASETS.TEST").as_str(),
            Some("('voc_2007_test',)")
        );
        let coco = load(&dir.path().join("coco_R_50_C4_1x_ssl.yaml"));
        assert_eq!(at(&coco, "MODEL.MASK_ON").as_bool(), Some(true));
        assert_eq!(at(&coco, "SOLVER.MAX_ITER").as_i64(), Some(90000));
        assert_eq!(at(&coco, "SOLVER.STEPS").as_str(), Some("(60000, 80000)"));
        assert_eq!(
            at(&coco, "DATASETS.TRAIN").as_str(),
            Some("(\"coco_2017_train\",)")
        );
    }

    #[test]
    fn train_net_is_valid_python_and_the_command_ends_with_the_run_opts() {
        let dir = tempfile::tempdir().unwrap();
        write_configs(dir.path(), Path::new("/w.pkl")).unwrap();
        let script = dir.path().join("train_net.py");
        // Compiles (no Detectron2 needed); what it does is checked below.
        test_support::run_python(
            "import ast, sys; ast.parse(open(sys.argv[1]).read())",
            &[script.to_str().unwrap()],
        );
        let cmd = train_command(
            "py",
            dir.path(),
            &BENCHES[1],
            2,
            Path::new("/o/coco/seed2"),
            8,
            Path::new("/ds"),
        );
        let line = super::super::runs::display_command(&cmd);
        assert!(
            line.ends_with("--num-gpus 8 --resume SEED 2 OUTPUT_DIR /o/coco/seed2"),
            "{line}"
        );
    }

    /// Stand-ins for the Detectron2 API `train_net.py` uses, recording what
    /// the script does with them; the parser takes Detectron2's
    /// `default_argument_parser` options and `launch` calls `main` in-process.
    const DETECTRON2_STUBS: &str = r#"
import argparse, json, os, runpy, sys, types
import torch

def module(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m

class Registry:
    def __init__(self):
        self.classes = {}
    def register(self):
        def deco(cls):
            self.classes[cls.__name__] = cls
            return cls
        return deco

REGISTRY = Registry()
MAIN_PROCESS = [True]
CALLS = []

class Node(dict):
    def __getattr__(self, k):
        return self[k]
    def __setattr__(self, k, v):
        self[k] = v

class Cfg(Node):
    def merge_from_file(self, path):
        CALLS.append(["merge_from_file", os.path.basename(path)])
    def merge_from_list(self, opts):
        for k, v in zip(opts[::2], opts[1::2]):
            self[k] = v
    def freeze(self):
        pass

def get_cfg():
    return Cfg(MODEL=Node(RESNETS=Node(NORM="SyncBN"), WEIGHTS="w.pkl"), OUTPUT_DIR="./output")

class Res5ROIHeads(torch.nn.Module):
    def __init__(self, cfg, input_shape):
        super().__init__()
        block = torch.nn.Identity()
        block.out_channels = 2048
        self.res5 = torch.nn.Sequential(block)

def get_norm(norm, channels):
    m = torch.nn.Identity()
    m.kind, m.channels = norm, channels
    return m

RESULTS = {"bbox": {"AP": 40.5, "AP50": 60.25, "AP75": 44.0}, "segm": {"AP": 35.0, "AP50": 57.0, "AP75": 37.5}}

class DefaultTrainer:
    def __init__(self, cfg):
        self.cfg, self.model = cfg, "model"
    def resume_or_load(self, resume):
        CALLS.append(["resume_or_load", resume])
    def train(self):
        self._last_eval_results = RESULTS
    @classmethod
    def build_model(cls, cfg):
        return "model"
    @classmethod
    def test(cls, cfg, model):
        return {"bbox": {"AP": 1.0, "AP50": 2.0, "AP75": 3.0}}

def default_argument_parser():
    p = argparse.ArgumentParser()
    p.add_argument("--config-file", default="")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--eval-only", action="store_true")
    p.add_argument("--num-gpus", type=int, default=1)
    p.add_argument("--num-machines", type=int, default=1)
    p.add_argument("--machine-rank", type=int, default=0)
    p.add_argument("--dist-url", default="auto")
    p.add_argument("opts", nargs=argparse.REMAINDER)
    return p

def launch(main, num_gpus, num_machines, machine_rank, dist_url, args):
    CALLS.append(["launch", num_gpus])
    main(*args)

class Evaluator:
    def __init__(self, *a):
        self.args = [x if isinstance(x, (str, bool, int)) else type(x).__name__ for x in a]

module("detectron2")
module("detectron2.checkpoint", DetectionCheckpointer=None)
module("detectron2.config", get_cfg=get_cfg)
module("detectron2.engine", DefaultTrainer=DefaultTrainer,
       default_argument_parser=default_argument_parser,
       default_setup=lambda cfg, args: None, launch=launch)
module("detectron2.evaluation", COCOEvaluator=type("COCOEvaluator", (Evaluator,), {}),
       PascalVOCDetectionEvaluator=type("PascalVOCDetectionEvaluator", (Evaluator,), {}))
module("detectron2.layers", get_norm=get_norm)
module("detectron2.modeling")
module("detectron2.modeling.roi_heads", ROI_HEADS_REGISTRY=REGISTRY, Res5ROIHeads=Res5ROIHeads)
module("detectron2.utils")
module("detectron2.utils.comm", is_main_process=lambda: MAIN_PROCESS[0])
sys.modules["detectron2.utils"].comm = sys.modules["detectron2.utils.comm"]

script, argv = sys.argv[1], sys.argv[2:]
sys.argv = [script] + argv
g = runpy.run_path(script, run_name="__main__")
heads = REGISTRY.classes["Res5ROIHeadsExtraNorm"](get_cfg(), None)
last = list(heads.res5.named_children())[-1]
trainer = g["Trainer"]
evaluators = {}
for name in ("coco_2017_val", "voc_2007_test", "imagenet"):
    try:
        ev = trainer.build_evaluator(Node(OUTPUT_DIR="/out"), name)
        evaluators[name] = [type(ev).__name__] + ev.args
    except ValueError as e:
        evaluators[name] = ["ValueError", str(e)]
MAIN_PROCESS[0] = False
other = os.path.join(os.path.dirname(script), "not-main")
os.makedirs(other)
g["write_results"](Node(OUTPUT_DIR=other), RESULTS)
print(json.dumps({
    "calls": CALLS,
    "last_res5_child": [last[0], getattr(last[1], "kind", None), getattr(last[1], "channels", None)],
    "evaluators": evaluators,
    "not_main_wrote": os.listdir(other),
}))
"#;

    /// `train_net.py` run as the xtask starts it (`train_command`), against
    /// stand-ins for Detectron2: it registers the C4 head with one more
    /// norm of the configured kind after res5, picks the evaluator from the
    /// dataset name, and leaves the last evaluation where the collector
    /// reads it (`read_final` on `<run dir>/final_results.json`), from the
    /// main process only.
    #[test]
    fn train_net_writes_what_the_collector_reads() {
        let dir = tempfile::tempdir().unwrap();
        write_configs(dir.path(), Path::new("/w.pkl")).unwrap();
        let run_dir = dir.path().join("table3/coco/seed2");
        fs::create_dir_all(&run_dir).unwrap();
        let cmd = train_command(
            "py",
            dir.path(),
            &BENCHES[1],
            2,
            &run_dir,
            8,
            Path::new("/ds"),
        );
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_str().unwrap().to_string())
            .collect();
        // The script, then its arguments.
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = test_support::run_python(DETECTRON2_STUBS, &argv);
        let facts: serde_json::Value = serde_json::from_str(out.lines().last().unwrap_or(""))
            .unwrap_or_else(|e| {
                panic!("train_net.py under the stubs printed no summary ({e}):\n{out}")
            });
        assert_eq!(
            facts["calls"],
            serde_json::json!([
                ["launch", 8],
                ["merge_from_file", "coco_R_50_C4_1x_ssl.yaml"],
                ["resume_or_load", true]
            ]),
            "{facts}"
        );
        assert_eq!(
            facts["last_res5_child"],
            serde_json::json!(["norm", "SyncBN", 2048])
        );
        let ev = &facts["evaluators"];
        assert_eq!(
            ev["coco_2017_val"],
            serde_json::json!([
                "COCOEvaluator",
                "coco_2017_val",
                "Node",
                true,
                "/out/inference"
            ])
        );
        assert_eq!(
            ev["voc_2007_test"],
            serde_json::json!(["PascalVOCDetectionEvaluator", "voc_2007_test"])
        );
        assert_eq!(ev["imagenet"][0], "ValueError");
        assert_eq!(facts["not_main_wrote"], serde_json::json!([]));
        let results = run_dir.join("final_results.json");
        assert_eq!(read_final(&results, "bbox"), Some([60.25, 40.5, 44.0]));
        assert_eq!(read_final(&results, "segm"), Some([57.0, 35.0, 37.5]));
        assert!(!run_dir.join("final_results.json.tmp").exists());
    }

    #[test]
    fn check_names_what_is_missing_and_how_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let ds = dir.path().join("datasets");
        for p in &DATASET_PATHS[..6] {
            fs::create_dir_all(ds.join(p)).unwrap();
        }
        let ckpt = dir.path().join("checkpoint.safetensors");
        let (report, missing) = check("/nonexistent/python3", &ds, &ckpt, None);
        assert_eq!(missing, 3, "{report}");
        assert!(
            report.contains("pip install 'git+https://github.com/facebookresearch/detectron2.git'")
        );
        // VOC is there, COCO is not: only COCO's paths are named.
        assert!(
            report.contains("coco/train2017") && !report.contains("VOC2007/JPEGImages"),
            "{report}"
        );
        assert!(report.contains("--methods cw-rgp-4-200ep"));
        fs::write(&ckpt, b"x").unwrap();
        for p in &DATASET_PATHS[6..] {
            fs::create_dir_all(ds.join(p)).unwrap();
        }
        let (report, missing) = check("/nonexistent/python3", &ds, &ckpt, None);
        assert_eq!(missing, 1, "{report}");
    }

    #[test]
    fn results_collect_into_mean_and_std_beside_the_paper() {
        let dir = tempfile::tempdir().unwrap();
        let t3 = dir.path().join("table3");
        for (s, ap) in [(0usize, 57.0), (1, 57.2), (2, 57.4)] {
            let voc = seed_dir(&t3, &BENCHES[0], s);
            fs::create_dir_all(&voc).unwrap();
            fs::write(
                voc.join("final_results.json"),
                format!(r#"{{"bbox": {{"AP": {ap}, "AP50": 82.0, "AP75": 63.0}}}}"#),
            )
            .unwrap();
        }
        // COCO: one seed only, with masks.
        let coco = seed_dir(&t3, &BENCHES[1], 0);
        fs::create_dir_all(&coco).unwrap();
        fs::write(
            coco.join("final_results.json"),
            r#"{"bbox": {"AP": 40.0, "AP50": 60.0, "AP75": 44.0, "APs": 1.0},
                "segm": {"AP": 35.0, "AP50": 57.0, "AP75": 37.5}}"#,
        )
        .unwrap();
        let s = summarise(&[[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]).unwrap();
        assert_eq!(s.mean, [2.0, 3.0, 4.0]);
        assert!((s.std[0] - 2f64.sqrt()).abs() < 1e-12);
        write_table3(dir.path(), &t3, 3).unwrap();
        let md = fs::read_to_string(dir.path().join("table3.md")).unwrap();
        assert!(
            md.contains("| VOC07+12 det | AP | 57.2 ± 0.10 | 57.2 ± 0.20 | +0.0 | 3 |"),
            "{md}"
        );
        assert!(
            md.contains("| COCO inst. seg. | AP50 | 57.3 ± 0.16 | 57.0 ± 0.00 | -0.3 | 1 |"),
            "{md}"
        );
        let csv = fs::read_to_string(dir.path().join("table3.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + 9);
        assert!(
            csv.contains("COCO det,AP,40.7,0.14,40.0000,0.0000,-0.7000,1"),
            "{csv}"
        );
    }
}
