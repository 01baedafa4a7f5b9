//! JPEG decoding against Pillow: every file here is written by the test
//! itself with the venv's Pillow (sizes from 1×1 to 500×375, qualities 35 to
//! 100, 4:4:4 / 4:2:2 / 4:2:0 chroma, baseline, optimised, progressive, with
//! restart markers, greyscale, Adobe CMYK, CMYK without the Adobe marker,
//! YCCK, RGB-coded (Adobe transform 0), extraneous bytes before the end
//! marker, a progressive file whose last scans are missing), and our RGB must be
//! **bit-identical** to `PIL.Image.open(p).convert("RGB")` — 0 levels, since
//! both run libjpeg-turbo with the same settings and the CMYK conversion is
//! Pillow's integer arithmetic. Partial decodes must equal the full decode
//! inside the box, on random and edge-touching boxes. Files Pillow cannot
//! open must give an error naming the file.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ssl_data::augment::random_resized_crop::CropBox;
use ssl_data::jpeg::{self, JpegColorspace};
use ssl_data::{DataError, RgbImage};
use tch::Tensor;

/// Writes the JPEG files and, for each, Pillow's RGB decode as `.npy`
/// (or the error Pillow raised); prints a JSON manifest.
const WRITE: &str = r#"
import sys, json, io, os
import numpy as np
from PIL import Image
d = sys.argv[1]
rng = np.random.default_rng(5)

def scene(w, h):
    # Smooth colour fields (upscaled noise) plus sharp edges and a little
    # noise: chroma that varies at every scale, so upsampling matters.
    sw, sh = max(1, w // 6), max(1, h // 6)
    base = Image.fromarray(rng.integers(0, 256, (sh, sw, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    a = np.asarray(base).astype(np.int16)
    a[:, : w // 3] = 255 - a[:, : w // 3]
    a[h // 2 :, :, 1] //= 2
    a += rng.integers(-3, 4, a.shape, dtype=np.int16)
    return np.clip(a, 0, 255).astype(np.uint8)

files = []
def save(name, im, **kw):
    p = os.path.join(d, name)
    im.save(p, "JPEG", **kw)
    files.append(name)
    return p

sizes = [(7, 5), (17, 33), (250, 187), (500, 375)]
qualities = [35, 75, 90, 100]
k = 0
for (w, h) in sizes:
    for sub in (0, 1, 2):
        for prog in (False, True):
            q = qualities[k % 4]; k += 1
            save(f"rgb_{w}x{h}_s{sub}_q{q}_p{int(prog)}.jpg", Image.fromarray(scene(w, h)),
                 quality=q, subsampling=sub, progressive=prog, optimize=(k % 3 == 0))
save("rgb_1x1.jpg", Image.fromarray(scene(1, 1)), quality=90)
save("rgb_301x211_s2_restart.jpg", Image.fromarray(scene(301, 211)), quality=85, subsampling=2,
     restart_marker_rows=1)
save("rgb_64x48_s1_restart_prog.jpg", Image.fromarray(scene(64, 48)), quality=80, subsampling=1,
     restart_marker_blocks=3, progressive=True)
for (w, h), prog in (((9, 13), False), ((250, 187), False), ((333, 250), True)):
    save(f"gray_{w}x{h}_p{int(prog)}.jpg", Image.fromarray(scene(w, h)).convert("L"), quality=88,
         progressive=prog)
for (w, h), prog, q in (((11, 7), False, 90), ((250, 187), False, 75), ((200, 150), True, 95)):
    save(f"cmyk_{w}x{h}_p{int(prog)}.jpg", Image.fromarray(scene(w, h)).convert("CMYK"), quality=q,
         progressive=prog)

def patched(src, name, fn):
    b = bytearray(open(os.path.join(d, src), "rb").read())
    fn(b)
    open(os.path.join(d, name), "wb").write(bytes(b))
    files.append(name)

def adobe_at(b):
    i = bytes(b).find(b"Adobe")
    assert i > 4 and b[i - 4 : i - 2] == b"\xff\xee", "no Adobe marker"
    return i
# YCCK: the CMYK file's Adobe transform flag (byte 11 of the segment) set to 2,
# so libjpeg reads the first three components as YCC.
def to_ycck(b):
    i = adobe_at(b)
    b[i + 11] = 2
patched("cmyk_250x187_p0.jpg", "ycck_250x187.jpg", to_ycck)
patched("cmyk_200x150_p1.jpg", "ycck_200x150_p1.jpg", to_ycck)
# CMYK without the Adobe marker: its APP14 turned into a comment (COM).
def drop_adobe(b):
    i = adobe_at(b)
    b[i - 3] = 0xFE
patched("cmyk_250x187_p0.jpg", "cmyk_noadobe_250x187.jpg", drop_adobe)
# Three components stored as RGB: the JFIF marker (which implies YCbCr)
# turned into a comment and an Adobe marker with transform 0 inserted after
# SOI, so libjpeg applies no colour conversion (JCS_RGB).
def adobe_rgb(b):
    assert b[2:4] == b"\xff\xe0"
    b[3] = 0xFE
    b[2:2] = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
patched("rgb_250x187_s0_q35_p0.jpg", "adobe_rgb_250x187.jpg", adobe_rgb)
# Junk between the entropy data and EOI: a libjpeg warning, not an error.
def extraneous(b):
    assert b[-2:] == b"\xff\xd9"
    b[-2:] = b"\x00\x12\x34\xff\xd9"
patched("rgb_250x187_s2_q35_p0.jpg", "extraneous_250x187.jpg", extraneous)
# A progressive file without its last three scans (the AC refinements of
# the three components): complete as a file, but with coefficients of
# unknown low bits, which libjpeg smooths using neighbouring blocks.
def drop_last_scans(b):
    sos = [i for i in range(len(b) - 1) if b[i] == 0xFF and b[i + 1] == 0xDA]
    assert len(sos) >= 4 and b[-2:] == b"\xff\xd9"
    del b[sos[-3] : len(b) - 2]
patched("rgb_500x375_s2_q100_p1.jpg", "prog_incomplete_500x375.jpg", drop_last_scans)
patched("rgb_250x187_s1_q100_p1.jpg", "prog_incomplete_250x187.jpg", drop_last_scans)

out = []
for name in files:
    p = os.path.join(d, name)
    with Image.open(p) as im:
        rgb = im.convert("RGB")
        np.save(p + ".npy", np.ascontiguousarray(np.asarray(rgb)))
        out.append({"name": name, "mode": im.mode, "progressive": bool(im.info.get("progressive"))})
print(json.dumps(out))
"#;

fn from_npy(path: &Path) -> RgbImage {
    let t = Tensor::read_npy(path).unwrap();
    let size = t.size();
    assert_eq!(size.len(), 3, "{}: {size:?}", path.display());
    let data = Vec::<u8>::try_from(&t.flatten(0, -1)).unwrap();
    RgbImage::from_raw(size[1] as usize, size[0] as usize, data).unwrap()
}

/// Number of differing values and the first differing pixel.
fn differences(a: &RgbImage, b: &RgbImage) -> (usize, Option<(usize, usize)>) {
    assert_eq!((a.width(), a.height()), (b.width(), b.height()));
    let mut n = 0;
    let mut first = None;
    for (i, (x, y)) in a.as_raw().iter().zip(b.as_raw()).enumerate() {
        if x != y {
            n += 1;
            first.get_or_insert(((i / 3) % a.width(), (i / 3) / a.width()));
        }
    }
    (n, first)
}

fn crop_of(img: &RgbImage, b: CropBox) -> RgbImage {
    let mut data = Vec::with_capacity(3 * b.width * b.height);
    for y in b.top..b.top + b.height {
        let o = 3 * (y * img.width() + b.left);
        data.extend_from_slice(&img.as_raw()[o..o + 3 * b.width]);
    }
    RgbImage::from_raw(b.width, b.height, data).unwrap()
}

struct Written {
    dir: tempfile::TempDir,
    files: Vec<(String, String, bool)>,
}

fn write_files() -> Written {
    let dir = test_support::scratch_dir();
    let out = test_support::run_python(WRITE, &[dir.path().to_str().unwrap()]);
    let manifest: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let files = manifest
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["mode"].as_str().unwrap().to_string(),
                f["progressive"].as_bool().unwrap(),
            )
        })
        .collect();
    Written { dir, files }
}

#[test]
fn jpeg_decoding_is_bit_identical_to_pillow() {
    let w = write_files();
    let mut seen = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for (name, mode, progressive) in &w.files {
        let path = w.dir.path().join(name);
        let bytes = std::fs::read(&path).unwrap();
        let header = jpeg::read_header(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(header.progressive, *progressive, "{name}");
        let expected_cs = match mode.as_str() {
            "L" => vec![JpegColorspace::Gray],
            "RGB" => vec![JpegColorspace::YCbCr, JpegColorspace::Rgb],
            "CMYK" => vec![JpegColorspace::Cmyk, JpegColorspace::Ycck],
            m => panic!("{name}: mode {m}"),
        };
        assert!(
            expected_cs.contains(&header.colorspace),
            "{name}: {:?} for Pillow mode {mode}",
            header.colorspace
        );
        seen.insert(format!("{:?}", header.colorspace));
        let ours = RgbImage::decode_file(&path, 0).unwrap();
        let pil = from_npy(&PathBuf::from(format!("{}.npy", path.display())));
        assert_eq!(
            (ours.width(), ours.height()),
            (pil.width(), pil.height()),
            "{name}"
        );
        let (n, first) = differences(&ours, &pil);
        if n > 0 {
            failures.push(format!(
                "{name} ({:?}, imcu {:?}): {n} values differ, first at {first:?}",
                header.colorspace, header.imcu
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "not bit-identical to Pillow:\n{}",
        failures.join("\n")
    );
    // Every colour space the module converts was exercised.
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["Cmyk", "Gray", "Rgb", "YCbCr", "Ycck"],
        "colour spaces covered"
    );
}

#[test]
fn partial_decode_equals_the_full_decode_inside_the_box() {
    let w = write_files();
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let mut partial = 0;
    for (name, _, _) in &w.files {
        let bytes = std::fs::read(w.dir.path().join(name)).unwrap();
        let header = jpeg::read_header(&bytes).unwrap();
        let full = jpeg::decode(&bytes).unwrap();
        let (iw, ih) = (header.width, header.height);
        let mut boxes: Vec<CropBox> = (0..24)
            .map(|_| {
                let width = rng.random_range(1..=iw);
                let height = rng.random_range(1..=ih);
                CropBox {
                    left: rng.random_range(0..=iw - width),
                    top: rng.random_range(0..=ih - height),
                    width,
                    height,
                }
            })
            .collect();
        // Boxes touching each edge and corner, and single pixels inside.
        let (bw, bh) = (iw.div_ceil(3), ih.div_ceil(3));
        for (left, top) in [(0, 0), (iw - bw, 0), (0, ih - bh), (iw - bw, ih - bh)] {
            boxes.push(CropBox {
                left,
                top,
                width: bw,
                height: bh,
            });
        }
        boxes.push(CropBox {
            left: iw / 2,
            top: ih / 2,
            width: 1,
            height: 1,
        });
        boxes.push(CropBox {
            left: iw - 1,
            top: ih - 1,
            width: 1,
            height: 1,
        });
        for b in boxes {
            let (img, left, top) = jpeg::decode_region(&bytes, &header, b).unwrap();
            assert!(
                left <= b.left && top <= b.top,
                "{name}: {b:?} at ({left}, {top})"
            );
            assert!(
                left + img.width() >= b.left + b.width && top + img.height() >= b.top + b.height,
                "{name}: {b:?} not covered by {}x{} at ({left}, {top})",
                img.width(),
                img.height()
            );
            partial += (img.width() * img.height() < iw * ih) as usize;
            let inside = CropBox {
                left: b.left - left,
                top: b.top - top,
                ..b
            };
            let (n, first) = differences(&crop_of(&img, inside), &crop_of(&full, b));
            assert_eq!(
                n, 0,
                "{name}: box {b:?}: {n} values differ from the full decode, first at {first:?}"
            );
        }
    }
    // Most boxes of the larger files really are decoded in part.
    assert!(partial > 200, "only {partial} partial decodes");
}

/// The margin is needed: decoding exactly the iMCU-aligned box (no margin)
/// differs from the full decode at the box's edges on subsampled files,
/// which is what the margins of `JpegHeader::region_for` prevent.
#[test]
fn a_region_without_margin_would_differ() {
    let w = write_files();
    let name = "rgb_500x375_s2_q90_p0.jpg";
    assert!(w.files.iter().any(|f| f.0 == name));
    let bytes = std::fs::read(w.dir.path().join(name)).unwrap();
    let header = jpeg::read_header(&bytes).unwrap();
    assert_eq!(header.imcu, Some((16, 16)));
    let full = jpeg::decode(&bytes).unwrap();
    // A box whose left edge is on an iMCU boundary, decoded with no margin.
    let b = CropBox {
        left: 160,
        top: 96,
        width: 128,
        height: 96,
    };
    let tight = jpeg::decode_exact_region_for_tests(&bytes, &header, b).unwrap();
    let (n, _) = differences(&tight, &crop_of(&full, b));
    assert!(
        n > 0,
        "decoding without a margin matched: the margin test proves nothing"
    );
}

#[test]
fn dct_scaling_is_opt_in_and_changes_pixels() {
    let w = write_files();
    let bytes = std::fs::read(w.dir.path().join("rgb_500x375_s2_q90_p0.jpg")).unwrap();
    let half = jpeg::decode_scaled(&bytes, 4).unwrap();
    assert_eq!((half.width(), half.height()), (250, 188));
    let same = jpeg::decode_scaled(&bytes, 8).unwrap();
    assert_eq!(same, jpeg::decode(&bytes).unwrap());
    assert!(jpeg::decode_scaled(&bytes, 0).is_err() && jpeg::decode_scaled(&bytes, 9).is_err());
}

/// Files Pillow refuses: an error naming the file (never a panic); a PNG
/// behind a `.JPEG` name is read as the PNG it is, as Pillow does.
#[test]
fn unreadable_files_are_errors_that_name_the_file() {
    const BAD: &str = r#"
import sys, io, os, json
import numpy as np
from PIL import Image
d = sys.argv[1]
im = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8))
buf = io.BytesIO(); im.save(buf, "JPEG", quality=90); good = buf.getvalue()
cases = {
    "empty.jpg": b"",
    "text.jpg": b"this is not an image\n",
    "no_eoi.jpg": good[:-2],
    "cut.jpg": good[: len(good) - 40],
    "header_only.jpg": good[:200],
    "soi_only.jpg": b"\xff\xd8\xff",
}
for name, data in cases.items():
    open(os.path.join(d, name), "wb").write(data)
im.save(os.path.join(d, "png_inside.JPEG"), "PNG")
res = {}
for name in list(cases) + ["png_inside.JPEG"]:
    try:
        with Image.open(os.path.join(d, name)) as f:
            f.convert("RGB")
        res[name] = "ok"
    except Exception as e:
        res[name] = type(e).__name__
print(json.dumps(res))
"#;
    let dir = test_support::scratch_dir();
    let out = test_support::run_python(BAD, &[dir.path().to_str().unwrap()]);
    let pil: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for (name, verdict) in pil.as_object().unwrap() {
        let path = dir.path().join(name);
        let ours = std::panic::catch_unwind(|| RgbImage::decode_file(&path, 7))
            .unwrap_or_else(|_| panic!("{name}: decoding panicked"));
        match (verdict.as_str().unwrap(), ours) {
            ("ok", Ok(img)) => assert_eq!((img.width(), img.height()), (60, 40), "{name}"),
            ("ok", Err(e)) => panic!("{name}: Pillow reads it, we fail: {e}"),
            (pil_err, Ok(_)) => panic!("{name}: Pillow fails ({pil_err}), we decode it"),
            (_, Err(e)) => {
                assert!(
                    matches!(e, DataError::Decode { entry: 7, .. }),
                    "{name}: {e:?}"
                );
                let msg = e.to_string();
                assert!(msg.contains(name) && msg.contains("entry 7"), "{msg}");
            }
        }
    }
    assert_eq!(pil["png_inside.JPEG"], "ok");
    assert_ne!(
        pil["no_eoi.jpg"], "ok",
        "Pillow accepts a JPEG without EOI?"
    );
}
