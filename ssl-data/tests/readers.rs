//! The readers on files written here in the distribution formats
//! (`docs/reference.md` §5.5): the images and labels come back exactly, and a
//! truncated file, a bad label, a count mismatch, an unknown wnid or an
//! undecodable image are errors naming the file and the offset or entry.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ssl_data::cifar::encode_record;
use ssl_data::{
    open_tiny_imagenet, CifarBinary, CifarKind, CifarSplit, DataError, Dataset, ImageFolder,
    RgbImage, Stl10, Stl10Split, TinyImageNetSplit,
};

fn random_image(w: usize, h: usize, rng: &mut ChaCha8Rng) -> RgbImage {
    let data = (0..3 * w * h).map(|_| rng.random::<u8>()).collect();
    RgbImage::from_raw(w, h, data).unwrap()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn cifar10_records_round_trip_across_batch_files() {
    let dir = test_support::scratch_dir();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut expected = Vec::new();
    for f in 1..=5 {
        let mut bytes = Vec::new();
        for _ in 0..f {
            let img = random_image(32, 32, &mut rng);
            let label = rng.random_range(0..10u8);
            encode_record(CifarKind::Cifar10, label, 0, &img, &mut bytes);
            expected.push((img, label));
        }
        write(&dir.path().join(format!("data_batch_{f}.bin")), &bytes);
    }
    let ds = CifarBinary::open(dir.path(), CifarKind::Cifar10, CifarSplit::Train).unwrap();
    assert_eq!(ds.len(), 15);
    for (i, (img, label)) in expected.iter().enumerate() {
        let s = ds.get(i).unwrap();
        assert_eq!(&s.image, img, "record {i}");
        assert_eq!(s.label, Some(*label as u32));
    }
    // The layout is R plane, G plane, B plane: byte 1 + 1024 + 5 is green of pixel 5 of record 0.
    let raw = std::fs::read(dir.path().join("data_batch_1.bin")).unwrap();
    assert_eq!(ds.get(0).unwrap().image.pixel(5, 0)[1], raw[1 + 1024 + 5]);
    assert!(matches!(
        ds.get(15),
        Err(DataError::IndexOutOfRange { index: 15, len: 15 })
    ));
}

#[test]
fn cifar100_reads_the_fine_label_and_checks_both() {
    let dir = test_support::scratch_dir();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut bytes = Vec::new();
    let img = random_image(32, 32, &mut rng);
    encode_record(CifarKind::Cifar100, 87, 19, &img, &mut bytes);
    encode_record(CifarKind::Cifar100, 3, 4, &img, &mut bytes);
    write(&dir.path().join("test.bin"), &bytes);
    let ds = CifarBinary::open(dir.path(), CifarKind::Cifar100, CifarSplit::Test).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.get(0).unwrap().label, Some(87));
    assert_eq!(ds.coarse_label(0).unwrap(), Some(19));
    assert_eq!(ds.get(1).unwrap().image, img);

    // A coarse label of 20 in the second record (offset 3074).
    bytes[3074] = 20;
    write(&dir.path().join("test.bin"), &bytes);
    let err = CifarBinary::open(dir.path(), CifarKind::Cifar100, CifarSplit::Test).unwrap_err();
    match &err {
        DataError::BadLabel {
            record,
            offset,
            label,
            classes,
            ..
        } => {
            assert_eq!((*record, *offset, *label, *classes), (1, 3074, 20, 20));
        }
        other => panic!("expected BadLabel, got {other:?}"),
    }
    assert!(err.to_string().contains("test.bin"), "{err}");
}

#[test]
fn cifar_truncated_file_and_bad_label_are_errors_naming_file_and_offset() {
    let dir = test_support::scratch_dir();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut bytes = Vec::new();
    for _ in 0..3 {
        encode_record(
            CifarKind::Cifar10,
            1,
            0,
            &random_image(32, 32, &mut rng),
            &mut bytes,
        );
    }
    let path = dir.path().join("test_batch.bin");
    write(&path, &bytes[..3073 * 2 + 100]);
    let err = CifarBinary::open(dir.path(), CifarKind::Cifar10, CifarSplit::Test).unwrap_err();
    match &err {
        DataError::PartialRecord {
            offset,
            record_bytes,
            len,
            ..
        } => {
            assert_eq!((*offset, *record_bytes, *len), (6146, 3073, 6246));
        }
        other => panic!("expected PartialRecord, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("test_batch.bin") && msg.contains("6146"),
        "{msg}"
    );

    bytes[3073] = 10; // label of record 1
    write(&path, &bytes);
    let err = CifarBinary::open(dir.path(), CifarKind::Cifar10, CifarSplit::Test).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::BadLabel {
                record: 1,
                offset: 3073,
                label: 10,
                ..
            }
        ),
        "{err:?}"
    );

    // A missing batch file names itself.
    let err = CifarBinary::open(dir.path(), CifarKind::Cifar10, CifarSplit::Train).unwrap_err();
    assert!(err.to_string().contains("data_batch_1.bin"), "{err}");
}

#[test]
fn stl10_reads_column_major_planes_labels_and_train_plus_unlabeled() {
    let dir = test_support::scratch_dir();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let train: Vec<RgbImage> = (0..3).map(|_| random_image(96, 96, &mut rng)).collect();
    let unlabeled: Vec<RgbImage> = (0..2).map(|_| random_image(96, 96, &mut rng)).collect();
    let enc = |imgs: &[RgbImage]| -> Vec<u8> {
        imgs.iter()
            .flat_map(|i| ssl_data::stl10::encode_image(i).unwrap())
            .collect()
    };
    write(&dir.path().join("train_X.bin"), &enc(&train));
    write(&dir.path().join("train_y.bin"), &[1, 10, 5]);
    write(&dir.path().join("unlabeled_X.bin"), &enc(&unlabeled));

    // Independent check of the column-major layout on the raw bytes:
    // byte c·96² + x·96 + y of image 0 is channel c of pixel (x, y).
    let raw = std::fs::read(dir.path().join("train_X.bin")).unwrap();
    let s = Stl10::open(dir.path(), Stl10Split::Train).unwrap();
    let img0 = s.get(0).unwrap().image;
    for (x, y, c) in [(0, 0, 0), (7, 3, 1), (95, 10, 2), (3, 95, 0)] {
        assert_eq!(
            img0.pixel(x, y)[c],
            raw[c * 9216 + x * 96 + y],
            "pixel ({x}, {y}) channel {c}"
        );
    }
    let labels: Vec<_> = (0..3).map(|i| s.get(i).unwrap().label).collect();
    assert_eq!(labels, [Some(0), Some(9), Some(4)]);

    let both = Stl10::open(dir.path(), Stl10Split::TrainUnlabeled).unwrap();
    assert_eq!(both.len(), 5);
    assert_eq!(both.get(2).unwrap().image, train[2]);
    let u = both.get(4).unwrap();
    assert_eq!((u.image, u.label), (unlabeled[1].clone(), None));
    assert_eq!(
        Stl10::open(dir.path(), Stl10Split::Unlabeled)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn stl10_truncated_images_bad_labels_and_count_mismatch_are_errors() {
    let dir = test_support::scratch_dir();
    let x = vec![7u8; 27648 * 2];
    write(&dir.path().join("test_X.bin"), &x[..27648 + 5]);
    write(&dir.path().join("test_y.bin"), &[1, 2]);
    let err = Stl10::open(dir.path(), Stl10Split::Test).unwrap_err();
    assert!(
        matches!(err, DataError::PartialRecord { offset: 27648, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("test_X.bin"));

    write(&dir.path().join("test_X.bin"), &x);
    write(&dir.path().join("test_y.bin"), &[1, 0]);
    let err = Stl10::open(dir.path(), Stl10Split::Test).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::BadLabel {
                record: 1,
                label: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("test_y.bin"));

    write(&dir.path().join("test_y.bin"), &[1, 2, 3]);
    let err = Stl10::open(dir.path(), Stl10Split::Test).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::CountMismatch {
                image_count: 2,
                label_count: 3,
                ..
            }
        ),
        "{err:?}"
    );
}

fn save_png(path: &Path, img: &RgbImage) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_raw(
        img.width() as u32,
        img.height() as u32,
        img.as_raw().to_vec(),
    )
    .unwrap()
    .save_with_format(path, image::ImageFormat::Png)
    .unwrap();
}

#[test]
fn image_folder_sorts_classes_and_files_and_decodes_lazily() {
    let dir = test_support::scratch_dir();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let a = random_image(20, 12, &mut rng);
    let b = random_image(9, 17, &mut rng);
    let c = random_image(5, 5, &mut rng);
    save_png(&dir.path().join("zebra/b.png"), &b);
    save_png(&dir.path().join("zebra/nested/a.PNG"), &a);
    save_png(&dir.path().join("ant/x.png"), &c);
    std::fs::write(dir.path().join("ant/notes.txt"), "not an image").unwrap();
    let ds = ImageFolder::open(dir.path()).unwrap();
    assert_eq!(ds.classes(), ["ant", "zebra"]);
    assert_eq!(ds.len(), 3);
    // Sorted paths: ant/x.png, zebra/b.png, zebra/nested/a.PNG.
    assert_eq!(
        ds.get(0).unwrap(),
        ssl_data::Sample {
            image: c,
            label: Some(0)
        }
    );
    assert_eq!(ds.get(1).unwrap().image, b);
    assert_eq!(ds.get(2).unwrap().image, a);

    // A corrupt file is found only when read, and the error names it and the entry.
    std::fs::write(dir.path().join("zebra/b.png"), b"\x89PNG garbage").unwrap();
    let err = ds.get(1).unwrap_err();
    assert!(matches!(err, DataError::Decode { entry: 1, .. }), "{err:?}");
    assert!(err.to_string().contains("b.png"), "{err}");

    // A class folder without images is an error, as in torchvision.
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    let err = ImageFolder::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn tiny_imagenet_train_and_val_layout() {
    let dir = test_support::scratch_dir();
    let root = dir.path();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    std::fs::write(root.join("wnids.txt"), "n02\nn01\n").unwrap();
    let t01 = random_image(64, 64, &mut rng);
    let t02 = random_image(64, 64, &mut rng);
    let v0 = random_image(64, 64, &mut rng);
    // Real files are JPEG; PNG content under the same names checks exact pixels.
    save_png(&root.join("train/n01/images/n01_0.JPEG"), &t01);
    save_png(&root.join("train/n02/images/n02_0.JPEG"), &t02);
    std::fs::write(
        root.join("train/n01/n01_boxes.txt"),
        "n01_0.JPEG\t0\t0\t10\t10\n",
    )
    .unwrap();
    save_png(&root.join("val/images/val_0.JPEG"), &v0);
    save_png(&root.join("val/images/val_1.JPEG"), &t01);
    std::fs::write(
        root.join("val/val_annotations.txt"),
        "val_0.JPEG\tn02\t0\t0\t63\t63\nval_1.JPEG\tn01\t1\t2\t3\t4\n",
    )
    .unwrap();
    let train = open_tiny_imagenet(root, TinyImageNetSplit::Train).unwrap();
    assert_eq!(train.classes(), ["n01", "n02"]);
    assert_eq!(train.len(), 2);
    assert_eq!(
        train.get(0).unwrap(),
        ssl_data::Sample {
            image: t01,
            label: Some(0)
        }
    );
    assert_eq!(train.get(1).unwrap().label, Some(1));
    let val = open_tiny_imagenet(root, TinyImageNetSplit::Val).unwrap();
    assert_eq!(
        val.get(0).unwrap(),
        ssl_data::Sample {
            image: v0,
            label: Some(1)
        }
    );
    assert_eq!(val.get(1).unwrap().label, Some(0));

    std::fs::write(
        root.join("val/val_annotations.txt"),
        "val_0.JPEG\tn02\nval_1.JPEG\tn99\n",
    )
    .unwrap();
    let err = open_tiny_imagenet(root, TinyImageNetSplit::Val).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("val_annotations.txt") && msg.contains("line 2") && msg.contains("n99"),
        "{msg}"
    );
}

#[test]
fn jpeg_files_decode_close_to_their_source() {
    // JPEG is lossy: a smooth image at quality 95 decodes within a few levels.
    let dir = test_support::scratch_dir();
    let (w, h) = (48usize, 40usize);
    let data: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).flat_map(move |x| [(4 * x) as u8, (5 * y) as u8, 128]))
        .collect();
    let img = RgbImage::from_raw(w, h, data).unwrap();
    let path = dir.path().join("c/smooth.jpg");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(&path).unwrap();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(file, 95);
    enc.encode(
        img.as_raw(),
        w as u32,
        h as u32,
        image::ExtendedColorType::Rgb8,
    )
    .unwrap();
    drop(enc);
    let got = ImageFolder::open(dir.path()).unwrap().get(0).unwrap().image;
    assert_eq!((got.width(), got.height()), (w, h));
    let mean_abs: f64 = got
        .as_raw()
        .iter()
        .zip(img.as_raw())
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .sum::<f64>()
        / (3 * w * h) as f64;
    assert!(mean_abs < 3.0, "mean absolute JPEG error {mean_abs}");
}
