//! Each transform against `torchvision.transforms.functional` (or Pillow,
//! for the release's blur) on PIL images (the venv's torchvision 0.28 /
//! Pillow), given the same input and the same sampled parameters (crop box,
//! factors, order, radius). `tests/release_recipes.rs` compares the recipes
//! these make up.
//!
//! Tolerances, and why:
//! - resampling (bicubic, bilinear: `resized_crop`, `resize`), colour
//!   jitter (each adjustment and their composition in a drawn order),
//!   grayscale, flip, solarize, center crop, Pillow's Gaussian blur:
//!   **exact** (0 levels). We reimplement Pillow's integer/`f32` arithmetic
//!   (22-bit fixed-point resampling weights, Pillow 13's choice of which
//!   pass runs first, `ImagingBlend` in `f32` with truncation, Pillow's 8-bit
//!   HSV, the extended box blur's 24-bit fixed-point weights), so any
//!   difference is a bug, not rounding. (Doing the passes in the other order
//!   than Pillow differs by up to 15 levels on noise: each pass rounds to 8
//!   bits.)
//! - `to_tensor` + `normalize`: `|Δ| ≤ 1e-6` (same `f32` operations; the
//!   bound allows for a reordering inside torch's kernel).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ssl_data::augment::center_crop::center_crop;
use ssl_data::augment::color_jitter::{
    adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, apply_jitter, ColorJitter,
};
use ssl_data::augment::flip::hflip;
use ssl_data::augment::gaussian_blur::{gaussian_blur, GaussianBlur};
use ssl_data::augment::grayscale::to_grayscale;
use ssl_data::augment::normalize::Normalize;
use ssl_data::augment::random_resized_crop::{resized_crop, RandomResizedCrop};
use ssl_data::augment::resize::{resize_shorter_side, Interpolation};
use ssl_data::augment::solarize::solarize;
use ssl_data::RgbImage;
use tch::Tensor;

const SCRIPT: &str = r#"
import sys, json
import numpy as np
import torch
from PIL import Image, ImageFilter
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode as IM
d = sys.argv[1]
params = json.load(open(f"{d}/params.json"))
def save(name, i, img):
    a = np.asarray(img)
    np.save(f"{d}/{name}_{i}.npy", np.ascontiguousarray(a))
for i, p in enumerate(params):
    im = Image.fromarray(np.load(f"{d}/img_{i}.npy"))
    t, l, h, w = p["crop"]
    save("crop_bicubic", i, F.resized_crop(im, t, l, h, w, [32, 32], IM.BICUBIC))
    t, l, h, w = p["crop_up"]
    save("crop_bilinear_up", i, F.resized_crop(im, t, l, h, w, [48, 40], IM.BILINEAR))
    save("brightness", i, F.adjust_brightness(im, p["b"]))
    save("contrast", i, F.adjust_contrast(im, p["c"]))
    save("saturation", i, F.adjust_saturation(im, p["s"]))
    save("hue", i, F.adjust_hue(im, p["h"]))
    j = im
    for op in p["order"]:
        j = [lambda x: F.adjust_brightness(x, p["jb"]), lambda x: F.adjust_contrast(x, p["jc"]),
             lambda x: F.adjust_saturation(x, p["js"]), lambda x: F.adjust_hue(x, p["jh"])][op](j)
    save("jitter", i, j)
    save("gray", i, F.rgb_to_grayscale(im, num_output_channels=3))
    save("hflip", i, F.hflip(im))
    save("solarize", i, F.solarize(im, p["thr"]))
    save("blur", i, im.filter(ImageFilter.GaussianBlur(radius=p["sigma"])))
    save("resize", i, F.resize(im, 20, IM.BICUBIC))
    save("center_small", i, F.center_crop(im, [24, 24]))
    save("center_pad", i, F.center_crop(im, [50, 50]))
    x = F.normalize(F.to_tensor(im), [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010])
    np.save(f"{d}/normalize_{i}.npy", x.numpy())
"#;

fn to_npy(img: &RgbImage, path: &std::path::Path) {
    Tensor::from_slice(img.as_raw())
        .view([img.height() as i64, img.width() as i64, 3])
        .write_npy(path)
        .unwrap();
}

fn from_npy(path: &std::path::Path) -> RgbImage {
    let t = Tensor::read_npy(path).unwrap();
    let size = t.size();
    assert_eq!(size.len(), 3, "{}: {size:?}", path.display());
    let data = Vec::<u8>::try_from(&t.flatten(0, -1)).unwrap();
    RgbImage::from_raw(size[1] as usize, size[0] as usize, data).unwrap()
}

/// (max |Δ|, number of differing values) between two images of one size.
fn diff(a: &RgbImage, b: &RgbImage, what: &str) -> (u8, usize) {
    assert_eq!(
        (a.width(), a.height()),
        (b.width(), b.height()),
        "{what}: sizes differ"
    );
    let mut max = 0;
    let mut n = 0;
    for (&x, &y) in a.as_raw().iter().zip(b.as_raw()) {
        let d = x.abs_diff(y);
        max = max.max(d);
        n += (d > 0) as usize;
    }
    (max, n)
}

fn test_images() -> Vec<RgbImage> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut noise = |w: usize, h: usize| {
        RgbImage::from_raw(w, h, (0..3 * w * h).map(|_| rng.random::<u8>()).collect()).unwrap()
    };
    let mut out = vec![noise(37, 29), noise(29, 37), noise(45, 45)];
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for (class, side) in [(0, 40), (3, 64), (7, 96)] {
        out.push(ssl_data::synthetic::render(class, side, &mut rng));
    }
    out
}

#[test]
fn transforms_match_torchvision_on_pil_images() {
    let dir = test_support::scratch_dir();
    let d = dir.path();
    let images = test_images();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let rrc = RandomResizedCrop::new(32).with_scale((0.08, 1.0));
    let jitter = ColorJitter::ssl_default();
    let mut params = Vec::new();
    let mut ours: Vec<Vec<(&str, RgbImage)>> = Vec::new();
    let mut ours_norm = Vec::new();
    for (i, img) in images.iter().enumerate() {
        to_npy(img, &d.join(format!("img_{i}.npy")));
        let crop = rrc.sample_box(img.height(), img.width(), &mut rng);
        let crop_up = RandomResizedCrop::new(48)
            .with_scale((0.05, 0.3))
            .sample_box(img.height(), img.width(), &mut rng);
        let single = jitter.sample(&mut rng);
        let (b, c, s) = (
            single.brightness.unwrap(),
            single.contrast.unwrap(),
            single.saturation.unwrap(),
        );
        // Both signs of the hue shift, including a wrap of H below 0.
        let h = if i % 2 == 0 {
            -single.hue.unwrap().abs()
        } else {
            single.hue.unwrap().abs()
        };
        let jp = jitter.sample(&mut rng);
        let sigma = GaussianBlur::imagenet().sample_radius(&mut rng);
        let thr = rng.random_range(64..192u8);

        let mut out = vec![
            (
                "crop_bicubic",
                resized_crop(img, crop, 32, 32, Interpolation::Bicubic).unwrap(),
            ),
            (
                "crop_bilinear_up",
                resized_crop(img, crop_up, 48, 40, Interpolation::Bilinear).unwrap(),
            ),
        ];
        let adjusted = |f: &dyn Fn(&mut RgbImage)| {
            let mut x = img.clone();
            f(&mut x);
            x
        };
        out.push(("brightness", adjusted(&|x| adjust_brightness(x, b))));
        out.push(("contrast", adjusted(&|x| adjust_contrast(x, c))));
        out.push(("saturation", adjusted(&|x| adjust_saturation(x, s))));
        out.push(("hue", adjusted(&|x| adjust_hue(x, h))));
        out.push(("jitter", adjusted(&|x| apply_jitter(x, &jp))));
        out.push(("gray", adjusted(&to_grayscale)));
        out.push(("hflip", adjusted(&hflip)));
        out.push(("solarize", adjusted(&|x| solarize(x, thr))));
        out.push(("blur", gaussian_blur(img, sigma).unwrap()));
        out.push((
            "resize",
            resize_shorter_side(img, 20, Interpolation::Bicubic).unwrap(),
        ));
        out.push(("center_small", center_crop(img, 24, 24)));
        out.push(("center_pad", center_crop(img, 50, 50)));
        ours.push(out);
        let norm = Normalize::new([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]).unwrap();
        let mut buf = vec![0f32; 3 * img.width() * img.height()];
        norm.apply_into(img, &mut buf).unwrap();
        ours_norm.push(buf);

        params.push(serde_json::json!({
            "crop": [crop.top, crop.left, crop.height, crop.width],
            "crop_up": [crop_up.top, crop_up.left, crop_up.height, crop_up.width],
            "b": b, "c": c, "s": s, "h": h,
            "order": jp.order, "jb": jp.brightness, "jc": jp.contrast, "js": jp.saturation, "jh": jp.hue,
            "sigma": sigma, "thr": thr,
        }));
    }
    std::fs::write(
        d.join("params.json"),
        serde_json::to_string(&params).unwrap(),
    )
    .unwrap();
    test_support::run_python(SCRIPT, &[d.to_str().unwrap()]);

    let mut report = Vec::new();
    for (i, out) in ours.iter().enumerate() {
        for (name, mine) in out {
            let theirs = from_npy(&d.join(format!("{name}_{i}.npy")));
            let (max, n) = diff(mine, &theirs, name);
            let total = mine.as_raw().len();
            if max != 0 {
                report.push(format!(
                    "image {i} ({}x{}) {name}: max |diff| {max}, {n}/{total} values differ; parameters {}",
                    images[i].width(),
                    images[i].height(),
                    params[i]
                ));
            }
        }
        let theirs = Tensor::read_npy(d.join(format!("normalize_{i}.npy"))).unwrap();
        let theirs = Vec::<f32>::try_from(&theirs.flatten(0, -1)).unwrap();
        let max = ours_norm[i]
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        if max > 1e-6 {
            report.push(format!("image {i} normalize: max |diff| {max}"));
        }
    }
    assert!(
        report.is_empty(),
        "mismatches against torchvision:\n{}",
        report.join("\n")
    );
}

const CROPS_SCRIPT: &str = r#"
import sys, json
import numpy as np
from PIL import Image
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode as IM
d = sys.argv[1]
im = Image.fromarray(np.load(f"{d}/img.npy"))
modes = {"bicubic": IM.BICUBIC, "bilinear": IM.BILINEAR}
out = [np.asarray(F.resized_crop(im, t, l, h, w, [oh, ow], modes[m])).reshape(-1)
       for t, l, h, w, oh, ow, m in json.load(open(f"{d}/boxes.json"))]
np.save(f"{d}/out.npy", np.concatenate(out))
"#;

/// Many crop boxes and output sizes on one noise image (noise is the worst
/// case for 8-bit rounding), bicubic (the small datasets' crops) and
/// bilinear (ImageNet's): both pass orders of Pillow's rule, up- and
/// down-scaling, one axis unchanged. Exact.
#[test]
fn resized_crop_is_bit_identical_to_pillow_over_many_boxes() {
    let dir = test_support::scratch_dir();
    let d = dir.path();
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let (w, h) = (50usize, 43usize);
    let img =
        RgbImage::from_raw(w, h, (0..3 * w * h).map(|_| rng.random::<u8>()).collect()).unwrap();
    to_npy(&img, &d.join("img.npy"));
    let rrc = RandomResizedCrop::new(32).with_scale((0.08, 1.0));
    let mut boxes = Vec::new();
    let mut ours = Vec::new();
    for i in 0..160 {
        let b = rrc.sample_box(h, w, &mut rng);
        // Mostly the CIFAR case (32x32), sometimes an arbitrary output size, sometimes the crop's own width.
        let (oh, ow) = match i % 4 {
            0 => (rng.random_range(2..70), rng.random_range(2..70)),
            1 => (rng.random_range(2..70), b.width),
            _ => (32, 32),
        };
        let (filter, name) = if i < 80 {
            (Interpolation::Bicubic, "bicubic")
        } else {
            (Interpolation::Bilinear, "bilinear")
        };
        ours.extend_from_slice(resized_crop(&img, b, oh, ow, filter).unwrap().as_raw());
        boxes.push(serde_json::json!([
            b.top, b.left, b.height, b.width, oh, ow, name
        ]));
    }
    std::fs::write(d.join("boxes.json"), serde_json::to_string(&boxes).unwrap()).unwrap();
    test_support::run_python(CROPS_SCRIPT, &[d.to_str().unwrap()]);
    let theirs = Vec::<u8>::try_from(&Tensor::read_npy(d.join("out.npy")).unwrap()).unwrap();
    assert_eq!(theirs.len(), ours.len());
    let differing = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
    assert_eq!(
        differing,
        0,
        "{differing} of {} values differ from Pillow",
        ours.len()
    );
}

const COLOURS_SCRIPT: &str = r#"
import sys
import numpy as np
from PIL import Image
import torchvision.transforms.functional as F
d, h1, h2, s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
im = Image.fromarray(np.load(f"{d}/img.npy"))
np.save(f"{d}/hue1.npy", np.asarray(F.adjust_hue(im, h1)))
np.save(f"{d}/hue2.npy", np.asarray(F.adjust_hue(im, h2)))
np.save(f"{d}/sat.npy", np.asarray(F.adjust_saturation(im, s)))
"#;

/// Pillow's 8-bit HSV round trip and the saturation blend on 4 194 304
/// colours (every R and G, every 4th B): exact.
#[test]
fn hue_and_saturation_match_pillow_on_four_million_colours() {
    let dir = test_support::scratch_dir();
    let d = dir.path();
    let data: Vec<u8> = (0..64u32)
        .flat_map(|b| {
            (0..256u32)
                .flat_map(move |g| (0..256u32).flat_map(move |r| [r as u8, g as u8, (4 * b) as u8]))
        })
        .collect();
    let img = RgbImage::from_raw(2048, 2048, data).unwrap();
    to_npy(&img, &d.join("img.npy"));
    let (h1, h2, s) = (-0.0731f32, 0.3517f32, 1.3125f32);
    test_support::run_python(
        COLOURS_SCRIPT,
        &[
            d.to_str().unwrap(),
            &(h1 as f64).to_string(),
            &(h2 as f64).to_string(),
            &(s as f64).to_string(),
        ],
    );
    let hue1 = |x: &mut RgbImage| adjust_hue(x, h1);
    let hue2 = |x: &mut RgbImage| adjust_hue(x, h2);
    let sat = |x: &mut RgbImage| adjust_saturation(x, s);
    type Adjust<'a> = &'a dyn Fn(&mut RgbImage);
    let cases: [(&str, Adjust<'_>); 3] = [("hue1", &hue1), ("hue2", &hue2), ("sat", &sat)];
    for (name, f) in cases {
        let mut ours = img.clone();
        f(&mut ours);
        let theirs = from_npy(&d.join(format!("{name}.npy")));
        let (max, n) = diff(&ours, &theirs, name);
        assert_eq!(n, 0, "{name}: {n} values differ, max {max}");
    }
}

const BLUR_SCRIPT: &str = r#"
import sys, json
import numpy as np
from PIL import Image, ImageFilter
d = sys.argv[1]
out = []
for i, radii in enumerate(json.load(open(f"{d}/radii.json"))):
    im = Image.fromarray(np.load(f"{d}/img_{i}.npy"))
    for r in radii:
        out.append(np.asarray(im.filter(ImageFilter.GaussianBlur(radius=r))).reshape(-1))
np.save(f"{d}/out.npy", np.concatenate(out))
"#;

/// Pillow's `ImageFilter.GaussianBlur(radius)` (the release's ImageNet blur)
/// on noise and synthetic images from 1×1 to 224×224, at radii drawn from
/// the release's `[0.1, 2]`, its ends, and radii past the image size (the
/// box then reaches both edges at once, Pillow's second branch); then 1500
/// radii across `[0.1, 2]` on one noise image, where the box weights'
/// `f32` arithmetic decides values near a rounding boundary. Exact.
#[test]
fn gaussian_blur_is_bit_identical_to_pillow() {
    let dir = test_support::scratch_dir();
    let d = dir.path();
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let mut noise = |w: usize, h: usize| {
        RgbImage::from_raw(w, h, (0..3 * w * h).map(|_| rng.random::<u8>()).collect()).unwrap()
    };
    let mut images = vec![
        noise(1, 1),
        noise(1, 7),
        noise(6, 2),
        noise(37, 29),
        noise(224, 224),
        noise(40, 24),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(32);
    images.push(ssl_data::synthetic::render(5, 96, &mut rng));
    let blur = GaussianBlur::imagenet();
    let mut all_radii = Vec::new();
    let mut ours = Vec::new();
    for (i, img) in images.iter().enumerate() {
        to_npy(img, &d.join(format!("img_{i}.npy")));
        let mut radii = vec![0.1f32, 2.0, 0.5, 1.0, 3.7, 12.0, 60.0];
        let n = if i == 5 { 1500 } else { 12 };
        radii.extend((0..n).map(|_| blur.sample_radius(&mut rng)));
        for &r in &radii {
            ours.extend_from_slice(gaussian_blur(img, r).unwrap().as_raw());
        }
        all_radii.push(radii);
    }
    std::fs::write(
        d.join("radii.json"),
        serde_json::to_string(&all_radii).unwrap(),
    )
    .unwrap();
    test_support::run_python(BLUR_SCRIPT, &[d.to_str().unwrap()]);
    let theirs = Vec::<u8>::try_from(&Tensor::read_npy(d.join("out.npy")).unwrap()).unwrap();
    assert_eq!(theirs.len(), ours.len());
    let differing = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
    let max = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0);
    assert_eq!(
        differing,
        0,
        "{differing} of {} values differ from Pillow (max {max})",
        ours.len()
    );
}
