//! Every augmentation recipe compared whole with the official release's
//! torchvision pipelines (`winci-ai/CW-RGP`), where `torchvision_match.rs`
//! compares single transforms.
//!
//! The Python side (`RELEASE`) builds each of the release's pipelines with
//! the torchvision calls and arguments the release makes, leaving to
//! torchvision every default the release leaves to it (the ImageNet crops'
//! interpolation, scale and ratio, the flips' `p`, `Resize`'s interpolation):
//!
//! - small datasets: `base/datasets/transforms.py`'s `aug_transform` with
//!   `base/cfg.py`'s defaults (which `scripts/base.sh` does not override),
//!   the crop size and `base_transform` statistics of `base/datasets/{cifar10,
//!   cifar100,stl10,tiny_in}.py`;
//! - ImageNet: `ImageNet/train.py`'s `augmentation` list with
//!   `ImageNet/transform.py`'s `GaussianBlur` (Pillow's blur);
//! - evaluation: the datasets' `base_transform` / STL-10's `test_transform`,
//!   and `ImageNet/lincls.py`'s train and val transforms.
//!
//! Two tests:
//! - `recipes_match_the_release_step_by_step`: both sides describe each
//!   recipe as a list of steps with their parameters (ours from
//!   [`Pipeline::steps`], theirs by reading the torchvision objects), which
//!   must be equal: any change of order, probability, range, size,
//!   interpolation or mean/std fails it.
//! - `recipes_give_the_release_output_on_the_same_random_choices`: ours
//!   runs on test images, recording its random choices
//!   ([`Pipeline::augment_recorded`]); the release's pipeline runs on the
//!   same images with torch's and Python's random sources replaced by those
//!   choices (a coin value for each `torch.rand(1)`, the crop box for
//!   `RandomResizedCrop.get_params`, the order and factors for
//!   `ColorJitter.get_params`, the uniform value for `random.uniform`).
//!   The normalised outputs must agree to 1e-6 (one 8-bit level is more
//!   than 1e-2), and the release must draw exactly as many values of the
//!   same kinds in the same order.
//! - `the_loader_on_jpeg_files_gives_the_release_output`: end to end, the
//!   loader's batches from JPEG files (decoded in part, by libjpeg-turbo)
//!   against the release's ImageNet pipeline on torchvision's
//!   `Image.open(f).convert("RGB")` of the same files, replaying the
//!   loader's random choices.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use ssl_data::augment::resize::{resize, Interpolation};
use ssl_data::loader::sample_rng;
use ssl_data::{DatasetKind, Draw, ImageFolder, Loader, LoaderConfig, Pipeline, RgbImage, Step};
use tch::Tensor;

/// The release's pipelines as torchvision objects, a describer, and a
/// replayer; `describe` or `replay` as the first argument.
const RELEASE: &str = r#"
import sys, json, random
import numpy as np
import torch
from PIL import Image, ImageFilter
import torchvision.transforms as T

class PilGaussianBlur:
    """ImageNet/transform.py's GaussianBlur: Pillow's blur, radius random.uniform(sigma)."""
    def __init__(self, sigma=(0.1, 2.0)):
        self.sigma = sigma
    def __call__(self, x):
        return x.filter(ImageFilter.GaussianBlur(radius=random.uniform(self.sigma[0], self.sigma[1])))

# base/cfg.py's defaults.
CFG = dict(cj0=0.4, cj1=0.4, cj2=0.4, cj3=0.1, cj_p=0.8, gs_p=0.1,
           crop_s0=0.2, crop_s1=1.0, crop_r0=0.75, crop_r1=4 / 3, hf_p=0.5)

# base_transform() of base/datasets/{cifar10,cifar100,stl10,tiny_in}.py; ImageNet/train.py.
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "stl10": ((0.43, 0.42, 0.39), (0.27, 0.26, 0.27)),
    "tiny_in": ((0.480, 0.448, 0.398), (0.277, 0.269, 0.282)),
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}
CROP = {"cifar10": 32, "cifar100": 32, "stl10": 64, "tiny_in": 64}

def base_transform(ds):
    mean, std = STATS[ds]
    return T.Compose([T.ToTensor(), T.Normalize(mean, std)])

def aug_transform(ds):
    # base/datasets/transforms.py
    c = CFG
    return T.Compose([
        T.RandomApply([T.ColorJitter(c["cj0"], c["cj1"], c["cj2"], c["cj3"])], p=c["cj_p"]),
        T.RandomGrayscale(p=c["gs_p"]),
        T.RandomResizedCrop(CROP[ds], scale=(c["crop_s0"], c["crop_s1"]),
                            ratio=(c["crop_r0"], c["crop_r1"]), interpolation=3),
        T.RandomHorizontalFlip(p=c["hf_p"]),
        base_transform(ds),
    ])

def imagenet_normalize():
    mean, std = STATS["imagenet"]
    return T.Normalize(mean=mean, std=std)

RECIPES = {
    **{f"ssl_{ds}": (lambda ds=ds: aug_transform(ds)) for ds in CROP},
    # ImageNet/train.py
    "ssl_imagenet": lambda: T.Compose([
        T.RandomResizedCrop(224, scale=(0.2, 1.)),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([PilGaussianBlur([.1, 2.])], p=0.5),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        imagenet_normalize(),
    ]),
    "eval_cifar10": lambda: base_transform("cifar10"),
    "eval_cifar100": lambda: base_transform("cifar100"),
    "eval_tiny_in": lambda: base_transform("tiny_in"),
    # base/datasets/stl10.py's test_transform
    "eval_stl10": lambda: T.Compose([T.Resize(70, interpolation=3), T.CenterCrop(64), base_transform("stl10")]),
    # ImageNet/lincls.py
    "eval_imagenet": lambda: T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), imagenet_normalize()]),
    "linear_train_imagenet": lambda: T.Compose([
        T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), imagenet_normalize()]),
}

def floats(xs):
    return None if xs is None else [float(x) for x in xs]

def describe(t):
    if isinstance(t, T.Compose):
        return [d for s in t.transforms for d in describe(s)]
    if isinstance(t, T.RandomApply):
        return [{"op": "RandomApply", "p": float(t.p), "transforms": [d for s in t.transforms for d in describe(s)]}]
    if isinstance(t, T.ColorJitter):
        return [{"op": "ColorJitter", "brightness": floats(t.brightness), "contrast": floats(t.contrast),
                 "saturation": floats(t.saturation), "hue": floats(t.hue)}]
    if isinstance(t, T.RandomGrayscale):
        return [{"op": "RandomGrayscale", "p": float(t.p)}]
    if isinstance(t, T.RandomResizedCrop):
        return [{"op": "RandomResizedCrop", "size": list(t.size), "scale": floats(t.scale),
                 "ratio": floats(t.ratio), "interpolation": t.interpolation.value, "antialias": t.antialias}]
    if isinstance(t, T.RandomHorizontalFlip):
        return [{"op": "RandomHorizontalFlip", "p": float(t.p)}]
    if isinstance(t, T.RandomSolarize):
        return [{"op": "RandomSolarize", "threshold": float(t.threshold), "p": float(t.p)}]
    if isinstance(t, PilGaussianBlur):
        return [{"op": "PilGaussianBlur", "radius": floats(t.sigma)}]
    if isinstance(t, T.Resize):
        return [{"op": "Resize", "size": t.size, "interpolation": t.interpolation.value,
                 "max_size": t.max_size, "antialias": t.antialias}]
    if isinstance(t, T.CenterCrop):
        return [{"op": "CenterCrop", "size": list(t.size)}]
    if isinstance(t, T.ToTensor):
        return [{"op": "ToTensor"}]
    if isinstance(t, T.Normalize):
        return [{"op": "Normalize", "mean": floats(t.mean), "std": floats(t.std)}]
    raise TypeError(f"no description for {t!r}")

if sys.argv[1] == "describe":
    print(json.dumps({name: describe(make()) for name, make in RECIPES.items()}))
    sys.exit(0)

# replay: every random source the release's pipelines use hands out our recorded choices.
queue = []
def take(kind):
    if not queue:
        raise AssertionError(f"the release draws a {kind} after ours stopped drawing")
    k, v = queue.pop(0)
    if k != kind:
        raise AssertionError(f"the release draws a {kind} where ours drew a {k}")
    return v

torch.rand = lambda *a, **k: torch.tensor([take("coin")], dtype=torch.float64)
T.RandomResizedCrop.get_params = staticmethod(lambda img, scale, ratio: tuple(take("crop")))
def jitter_params(b, c, s, h):
    v = take("jitter")
    return torch.tensor(v["order"]), v["b"], v["c"], v["s"], v["h"]
T.ColorJitter.get_params = staticmethod(jitter_params)
random.uniform = lambda a, b: a + (b - a) * take("blur")

d = sys.argv[2]
pipelines = {name: make() for name, make in RECIPES.items()}
out = []
for i, task in enumerate(json.load(open(f"{d}/tasks.json"))):
    queue[:] = [tuple(x) for x in task["draws"]]
    if "file" in task:
        # torchvision's ImageFolder loader (datasets.folder.pil_loader).
        with open(task["file"], "rb") as f:
            img = Image.open(f).convert("RGB")
    else:
        img = Image.fromarray(np.load(f"{d}/img_{task['image']}.npy"))
    x = pipelines[task["recipe"]](img)
    if queue:
        raise AssertionError(f"task {i} ({task['recipe']}): ours drew {queue} beyond what the release draws")
    out.append(x.numpy().reshape(-1))
np.save(f"{d}/out.npy", np.concatenate(out).astype(np.float32))
"#;

/// Our recipes under the names `RELEASE` gives the release's.
fn recipes() -> Vec<(&'static str, Pipeline)> {
    use DatasetKind::*;
    vec![
        ("ssl_cifar10", Pipeline::ssl_small(Cifar10)),
        ("ssl_cifar100", Pipeline::ssl_small(Cifar100)),
        ("ssl_stl10", Pipeline::ssl_small(Stl10)),
        ("ssl_tiny_in", Pipeline::ssl_small(TinyImageNet)),
        ("ssl_imagenet", Pipeline::ssl_imagenet()),
        ("eval_cifar10", Pipeline::eval(Cifar10)),
        ("eval_cifar100", Pipeline::eval(Cifar100)),
        ("eval_tiny_in", Pipeline::eval(TinyImageNet)),
        ("eval_stl10", Pipeline::eval(Stl10)),
        ("eval_imagenet", Pipeline::eval(ImageNet)),
        ("linear_train_imagenet", Pipeline::linear_train_imagenet()),
    ]
}

fn interpolation(i: Interpolation) -> &'static str {
    match i {
        Interpolation::Bilinear => "bilinear",
        Interpolation::Bicubic => "bicubic",
    }
}

/// Our recipe in the form `describe` gives the release's: the steps, then
/// `ToTensor` and `Normalize`. Our resampling is Pillow's, which always
/// antialiases (torchvision's `antialias=True`).
fn describe(p: &Pipeline) -> Value {
    let mut out: Vec<Value> = p
        .steps()
        .iter()
        .map(|step| match *step {
            Step::ColorJitter { jitter, p } => {
                let range = |x: f32| json!([(1.0 - x as f64).max(0.0), 1.0 + x as f64]);
                json!({"op": "RandomApply", "p": p, "transforms": [{
                    "op": "ColorJitter",
                    "brightness": range(jitter.brightness),
                    "contrast": range(jitter.contrast),
                    "saturation": range(jitter.saturation),
                    "hue": [-(jitter.hue as f64), jitter.hue as f64],
                }]})
            }
            Step::Grayscale { p } => json!({"op": "RandomGrayscale", "p": p}),
            Step::RandomResizedCrop(r) => json!({
                "op": "RandomResizedCrop",
                "size": [r.out_height, r.out_width],
                "scale": [r.scale.0, r.scale.1],
                "ratio": [r.ratio.0, r.ratio.1],
                "interpolation": interpolation(r.interpolation),
                "antialias": true,
            }),
            Step::HorizontalFlip { p } => json!({"op": "RandomHorizontalFlip", "p": p}),
            Step::GaussianBlur { blur, p } => json!({"op": "RandomApply", "p": p, "transforms": [
                {"op": "PilGaussianBlur", "radius": [blur.radius.0, blur.radius.1]}
            ]}),
            Step::Solarize { threshold, p } => {
                json!({"op": "RandomSolarize", "threshold": threshold as f64, "p": p})
            }
            Step::ResizeShorterSide {
                size,
                interpolation: i,
            } => json!({
                "op": "Resize",
                "size": size,
                "interpolation": interpolation(i),
                "max_size": null,
                "antialias": true,
            }),
            Step::CenterCrop { size } => json!({"op": "CenterCrop", "size": [size, size]}),
        })
        .collect();
    let n = p.normalization();
    out.push(json!({"op": "ToTensor"}));
    out.push(json!({
        "op": "Normalize",
        "mean": n.mean.map(|x| x as f64),
        "std": n.std.map(|x| x as f64),
    }));
    Value::Array(out)
}

/// Equal JSON, numbers within `1e-6` relative (ours hold some parameters
/// as `f32`); the first difference's path otherwise.
fn same(a: &Value, b: &Value, path: &str) -> Result<(), String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            if (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0) {
                Ok(())
            } else {
                Err(format!("{path}: ours {x}, the release's {y}"))
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Err(format!(
                    "{path}: ours has {} entries, the release's {}",
                    x.len(),
                    y.len()
                ));
            }
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                same(u, v, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => same(u, v, &format!("{path}.{k}"))?,
                    (u, v) => return Err(format!("{path}.{k}: ours {u:?}, the release's {v:?}")),
                }
            }
            Ok(())
        }
        _ if a == b => Ok(()),
        _ => Err(format!("{path}: ours {a}, the release's {b}")),
    }
}

#[test]
fn recipes_match_the_release_step_by_step() {
    let theirs: Value =
        serde_json::from_str(&test_support::run_python(RELEASE, &["describe"])).unwrap();
    let theirs = theirs.as_object().unwrap();
    let ours = recipes();
    let mut names: Vec<&str> = ours.iter().map(|(n, _)| *n).collect();
    names.sort();
    let mut their_names: Vec<&str> = theirs.keys().map(|k| k.as_str()).collect();
    their_names.sort();
    assert_eq!(names, their_names, "the recipes compared");
    let mut report = Vec::new();
    for (name, p) in &ours {
        let mine = describe(p);
        if let Err(e) = same(&mine, &theirs[*name], name) {
            report.push(format!(
                "{e}\n  ours:          {mine}\n  the release's: {}",
                theirs[*name]
            ));
        }
    }
    assert!(
        report.is_empty(),
        "recipes that differ from the release's:\n{}",
        report.join("\n")
    );
}

/// The test images of a recipe: noise (the worst case for 8-bit rounding)
/// and synthetic scenes, at the dataset's size; for ImageNet, non-square
/// images larger and smaller than the crops.
fn images_for(name: &str, rng: &mut ChaCha8Rng) -> Vec<RgbImage> {
    let mut noise = |w: usize, h: usize| {
        RgbImage::from_raw(w, h, (0..3 * w * h).map(|_| rng.random::<u8>()).collect()).unwrap()
    };
    let side = match name {
        n if n.ends_with("cifar10") || n.ends_with("cifar100") => 32,
        n if n.ends_with("stl10") => 96,
        n if n.ends_with("tiny_in") => 64,
        _ => 0,
    };
    let mut scene_rng = ChaCha8Rng::seed_from_u64(side as u64 + 7);
    if side > 0 {
        vec![
            noise(side, side),
            ssl_data::synthetic::render(3, side, &mut scene_rng),
        ]
    } else {
        let scene = ssl_data::synthetic::render(6, 96, &mut scene_rng);
        vec![
            noise(257, 199),
            noise(150, 181),
            resize(&scene, 300, 240, Interpolation::Bicubic).unwrap(),
        ]
    }
}

/// Our draws as the `[kind, value]` pairs `RELEASE`'s replayer takes.
fn draws_json(draws: &[Draw]) -> Value {
    Value::Array(
        draws
            .iter()
            .map(|d| match d {
                Draw::Coin(u) => json!(["coin", u]),
                Draw::Crop(b) => json!(["crop", [b.top, b.left, b.height, b.width]]),
                Draw::Jitter(j) => json!(["jitter", {
                    "order": j.order,
                    "b": j.brightness, "c": j.contrast, "s": j.saturation, "h": j.hue,
                }]),
                Draw::Blur(u) => json!(["blur", u]),
            })
            .collect(),
    )
}

/// Walks a recipe's steps along one sample's draws (failing if they do not
/// fit) and counts, per step with a coin, the samples where it applied
/// (`[skipped, applied]`).
fn count_coins(p: &Pipeline, draws: &[Draw], counts: &mut [[usize; 2]]) {
    let mut it = draws.iter();
    for (k, step) in p.steps().iter().enumerate() {
        let prob = match *step {
            Step::RandomResizedCrop(_) => {
                assert!(matches!(it.next(), Some(Draw::Crop(_))), "{draws:?}");
                continue;
            }
            Step::ResizeShorterSide { .. } | Step::CenterCrop { .. } => continue,
            Step::ColorJitter { p, .. }
            | Step::Grayscale { p }
            | Step::HorizontalFlip { p }
            | Step::GaussianBlur { p, .. }
            | Step::Solarize { p, .. } => p,
        };
        let Some(&Draw::Coin(u)) = it.next() else {
            panic!("step {k} drew no coin: {draws:?}")
        };
        let on = u < prob;
        counts[k][on as usize] += 1;
        if on {
            match step {
                Step::ColorJitter { .. } => {
                    assert!(matches!(it.next(), Some(Draw::Jitter(_))), "{draws:?}")
                }
                Step::GaussianBlur { .. } => {
                    assert!(matches!(it.next(), Some(Draw::Blur(_))), "{draws:?}")
                }
                _ => {}
            }
        }
    }
    assert!(it.next().is_none(), "draws left over: {draws:?}");
}

#[test]
fn recipes_give_the_release_output_on_the_same_random_choices() {
    const SAMPLES: usize = 32;
    let dir = test_support::scratch_dir();
    let d = dir.path();
    let mut img_rng = ChaCha8Rng::seed_from_u64(41);
    let mut images = Vec::new();
    let mut tasks = Vec::new();
    let mut ours: Vec<(String, usize, Vec<f32>)> = Vec::new();
    for (name, p) in recipes() {
        let first = images.len();
        images.extend(images_for(name, &mut img_rng));
        let random = p
            .steps()
            .iter()
            .any(|s| !matches!(s, Step::ResizeShorterSide { .. } | Step::CenterCrop { .. }));
        let samples = if random { SAMPLES } else { 1 };
        let mut counts = vec![[0usize; 2]; p.steps().len()];
        for (k, img) in images[first..].iter().enumerate() {
            for _ in 0..samples {
                let mut rng = ChaCha8Rng::seed_from_u64(tasks.len() as u64);
                let mut draws = Vec::new();
                let view = p.augment_recorded(img, &mut rng, &mut draws).unwrap();
                assert_eq!((view.height(), view.width()), p.output_size(), "{name}");
                let mut buf = vec![0f32; p.output_len()];
                p.normalization().apply_into(&view, &mut buf).unwrap();
                count_coins(&p, &draws, &mut counts);
                tasks
                    .push(json!({"recipe": name, "image": first + k, "draws": draws_json(&draws)}));
                ours.push((name.to_string(), first + k, buf));
            }
        }
        // Every coin both applied and skipped its step at least once, so both
        // branches of every step met the release's.
        for (k, c) in counts.iter().enumerate() {
            let has_coin = !matches!(
                p.steps()[k],
                Step::RandomResizedCrop(_)
                    | Step::ResizeShorterSide { .. }
                    | Step::CenterCrop { .. }
            );
            assert!(
                !has_coin || (c[0] > 0 && c[1] > 0),
                "{name}: step {k} ({:?}) was skipped {} and applied {} times: draw more samples",
                p.steps()[k],
                c[0],
                c[1]
            );
        }
    }
    for (i, img) in images.iter().enumerate() {
        Tensor::from_slice(img.as_raw())
            .view([img.height() as i64, img.width() as i64, 3])
            .write_npy(d.join(format!("img_{i}.npy")))
            .unwrap();
    }
    std::fs::write(d.join("tasks.json"), serde_json::to_string(&tasks).unwrap()).unwrap();
    test_support::run_python(RELEASE, &["replay", d.to_str().unwrap()]);
    let theirs = Vec::<f32>::try_from(&Tensor::read_npy(d.join("out.npy")).unwrap()).unwrap();
    let total: usize = ours.iter().map(|(_, _, v)| v.len()).sum();
    assert_eq!(
        theirs.len(),
        total,
        "the release's outputs have another total size"
    );
    let mut report = Vec::new();
    let mut at = 0;
    for (t, (name, image, mine)) in ours.iter().enumerate() {
        let rel = &theirs[at..at + mine.len()];
        at += mine.len();
        let (max, n) = mine
            .iter()
            .zip(rel)
            .map(|(a, b)| (a - b).abs())
            .fold((0f32, 0usize), |(m, n), x| {
                (m.max(x), n + (x > 1e-6) as usize)
            });
        if max > 1e-6 {
            report.push(format!(
                "{name}, image {image}: {n} of {} values differ, max {max}; draws {}",
                mine.len(),
                tasks[t]["draws"]
            ));
        }
    }
    assert!(
        report.is_empty(),
        "outputs that differ from the release's on the same random choices:\n{}",
        report.join("\n")
    );
}

/// JPEG files for the end-to-end test: Pillow-written, of several sizes,
/// subsamplings, progressive, grey and CMYK.
const JPEGS: &str = r#"
import sys, os
import numpy as np
from PIL import Image
d = sys.argv[1]
rng = np.random.default_rng(17)
for i in range(12):
    w, h = [(500, 375), (375, 500), (320, 240), (257, 199)][i % 4]
    im = Image.fromarray(rng.integers(0, 256, (h // 6, w // 6, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    if i == 5:
        im = im.convert("L")
    if i == 7:
        im = im.convert("CMYK")
    os.makedirs(os.path.join(d, "c"), exist_ok=True)
    im.save(os.path.join(d, "c", f"{i:02d}.JPEG"), quality=[70, 90, 95][i % 3],
            subsampling=[2, 1, 0][i % 3], progressive=(i % 4 == 3))
"#;

#[test]
fn the_loader_on_jpeg_files_gives_the_release_output() {
    let dir = test_support::scratch_dir();
    let root = dir.path().join("folder");
    test_support::run_python(JPEGS, &[root.to_str().unwrap()]);
    let folder = std::sync::Arc::new(ImageFolder::open(&root).unwrap());
    let pipeline = Pipeline::ssl_imagenet();
    let cfg = LoaderConfig {
        threads: 2,
        ..LoaderConfig::new(4, 2, 23)
    };
    let loader = Loader::new(folder.clone(), pipeline.clone(), cfg).unwrap();
    let epoch = 1;
    let mut tasks = Vec::new();
    let mut ours = Vec::new();
    for batch in loader.epoch(epoch) {
        let batch = batch.unwrap();
        for (row, &index) in batch.indices.iter().enumerate() {
            // The loader's draws for this sample: its stream, views in order.
            let (path, _) = &folder.entries()[index];
            let bytes = std::fs::read(path).unwrap();
            let header = ssl_data::jpeg::read_header(&bytes).unwrap();
            let mut rng = sample_rng(23, epoch, index);
            for view in &batch.views {
                let draws = pipeline
                    .plan(header.height, header.width, &mut rng)
                    .unwrap();
                tasks.push(json!({
                    "recipe": "ssl_imagenet",
                    "file": path.to_str().unwrap(),
                    "draws": draws_json(&draws),
                }));
                ours.push(Vec::<f32>::try_from(&view.get(row as i64).flatten(0, -1)).unwrap());
            }
        }
    }
    assert_eq!(ours.len(), 2 * 12);
    let d = dir.path();
    std::fs::write(d.join("tasks.json"), serde_json::to_string(&tasks).unwrap()).unwrap();
    test_support::run_python(RELEASE, &["replay", d.to_str().unwrap()]);
    let theirs = Vec::<f32>::try_from(&Tensor::read_npy(d.join("out.npy")).unwrap()).unwrap();
    let mine: Vec<f32> = ours.concat();
    assert_eq!(theirs.len(), mine.len());
    let max = mine
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        max <= 1e-6,
        "the loader's views differ from the release's pipeline on the same files (max {max})"
    );
}
