//! `cargo xtask download DATASET`: the official archives, resumable (HTTP
//! `Range`), verified against their published MD5, extracted safely, and
//! idempotent (a verified, extracted dataset is left alone).
//!
//! Layout under `--dir D` (default `data/`): the archive is kept as
//! `D/<archive>`, extracted beside it, and a marker `D/.<name>.ok` records
//! the verified checksum. An interrupted transfer stays as
//! `D/<archive>.part` and the next call resumes it; a checksum mismatch
//! moves it to `D/<archive>.corrupt` and stops with both checksums.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use md5::{Digest, Md5};

/// How an archive is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archive {
    TarGz,
    Zip,
}

/// One downloadable dataset: its official archive and what it unpacks to.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: &'static str,
    pub url: &'static str,
    pub archive_name: &'static str,
    pub md5: &'static str,
    pub archive: Archive,
    /// Files that must exist (relative to the download dir) once extracted.
    pub expect: &'static [&'static str],
}

/// The datasets of `docs/reference.md` §5.1 with their publishers' archives
/// and checksums.
pub const SOURCES: &[Source] = &[
    Source {
        name: "cifar10",
        url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        archive_name: "cifar-10-binary.tar.gz",
        md5: "c32a1d4ab5d03f1284b67883e8d87530",
        archive: Archive::TarGz,
        expect: &[
            "cifar-10-batches-bin/data_batch_1.bin",
            "cifar-10-batches-bin/data_batch_5.bin",
            "cifar-10-batches-bin/test_batch.bin",
        ],
    },
    Source {
        name: "cifar100",
        url: "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        archive_name: "cifar-100-binary.tar.gz",
        md5: "03b5dce01913d631647c71ecec9e9cb8",
        archive: Archive::TarGz,
        expect: &["cifar-100-binary/train.bin", "cifar-100-binary/test.bin"],
    },
    Source {
        name: "stl10",
        url: "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
        archive_name: "stl10_binary.tar.gz",
        md5: "91f7769df0f17e558f3565bffb0c7dfb",
        archive: Archive::TarGz,
        expect: &[
            "stl10_binary/train_X.bin",
            "stl10_binary/train_y.bin",
            "stl10_binary/test_X.bin",
            "stl10_binary/unlabeled_X.bin",
        ],
    },
    Source {
        name: "tiny-imagenet",
        url: "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
        archive_name: "tiny-imagenet-200.zip",
        md5: "90528d7ca1a48142e341f4ef8d21d0de",
        archive: Archive::Zip,
        expect: &[
            "tiny-imagenet-200/wnids.txt",
            "tiny-imagenet-200/val/val_annotations.txt",
        ],
    },
];

pub fn source(name: &str) -> Result<&'static Source> {
    SOURCES.iter().find(|s| s.name == name).with_context(|| {
        format!(
            "unknown dataset `{name}`: expected one of {} (ImageNet needs an account: \
             download it yourself and run `cargo xtask check-imagenet DIR`)",
            SOURCES
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// What a call did, for the caller's message and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    AlreadyPresent,
    Downloaded { resumed_from: u64 },
}

/// Downloads, verifies and extracts `src` into `dir`. `url` overrides the
/// source's address (a mirror; the tests' local server).
pub fn fetch(src: &Source, dir: &Path, url: Option<&str>) -> Result<Outcome> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let marker = dir.join(format!(".{}.ok", src.name));
    let complete = || src.expect.iter().all(|f| dir.join(f).exists());
    if fs::read_to_string(&marker).is_ok_and(|m| m.trim() == src.md5) && complete() {
        return Ok(Outcome::AlreadyPresent);
    }
    let archive = dir.join(src.archive_name);
    let mut resumed_from = 0;
    if !archive.exists() {
        let part = dir.join(format!("{}.part", src.archive_name));
        resumed_from = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        transfer(url.unwrap_or(src.url), &part)?;
        let got = md5_file(&part)?;
        if got != src.md5 {
            let corrupt = dir.join(format!("{}.corrupt", src.archive_name));
            fs::rename(&part, &corrupt)
                .with_context(|| format!("moving aside {}", part.display()))?;
            bail!(
                "checksum mismatch for {}: MD5 {got}, published {}. The file was moved to {} \
                 (not used); run the command again to download it anew",
                src.archive_name,
                src.md5,
                corrupt.display()
            );
        }
        fs::rename(&part, &archive).with_context(|| format!("renaming {}", part.display()))?;
    } else {
        let got = md5_file(&archive)?;
        if got != src.md5 {
            bail!(
                "{} exists but its MD5 is {got}, not the published {}: delete it and run again",
                archive.display(),
                src.md5
            );
        }
    }
    extract(&archive, src.archive, dir)?;
    if !complete() {
        let missing: Vec<_> = src
            .expect
            .iter()
            .filter(|f| !dir.join(f).exists())
            .collect();
        bail!(
            "{} extracted but {missing:?} are missing: is it the right archive?",
            archive.display()
        );
    }
    atomic_write(&marker, format!("{}\n", src.md5).as_bytes())?;
    Ok(Outcome::Downloaded { resumed_from })
}

/// Transfers `url` into `part`, resuming from its current length and
/// retrying a dropped connection (with Range) a few times.
fn transfer(url: &str, part: &Path) -> Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into();
    const ATTEMPTS: usize = 5;
    let mut last_error = None;
    for attempt in 1..=ATTEMPTS {
        match transfer_once(&agent, url, part) {
            Ok(()) => return Ok(()),
            Err(e) => {
                eprintln!("xtask | download interrupted (attempt {attempt}/{ATTEMPTS}): {e:#}");
                last_error = Some(e);
                std::thread::sleep(Duration::from_millis(200 * attempt as u64));
            }
        }
    }
    Err(last_error.expect("at least one attempt")).with_context(|| {
        format!(
            "downloading {url} failed; the partial file {} is kept and the next call resumes it",
            part.display()
        )
    })
}

fn transfer_once(agent: &ureq::Agent, url: &str, part: &Path) -> Result<()> {
    let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut request = agent.get(url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let response = request
        .call()
        .with_context(|| format!("requesting {url}"))?;
    let status = response.status().as_u16();
    let (offset, append) = match status {
        206 => (have, true),
        200 => (0, false),
        // The part is already whole (the server has nothing past its end).
        416 if have > 0 => return Ok(()),
        other => bail!("{url} answered HTTP {other}"),
    };
    let total = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .map(|len| len + offset);
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .with_context(|| format!("opening {}", part.display()))?;
    let bar = indicatif::ProgressBar::new(total.unwrap_or(0));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_message(
        part.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    bar.set_position(offset);
    let mut reader = response.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut written = offset;
    loop {
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("reading {url} at byte {written}"))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])
            .with_context(|| format!("writing {}", part.display()))?;
        written += n as u64;
        bar.set_position(written);
    }
    file.sync_all()?;
    bar.finish_and_clear();
    if let Some(total) = total {
        if written < total {
            bail!("connection closed at byte {written} of {total}");
        }
    }
    Ok(())
}

pub fn md5_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Md5::new();
    io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// A path inside an archive, refused if it could escape the target folder.
fn safe_relative(name: &Path, archive: &Path) -> Result<PathBuf> {
    if name.is_absolute()
        || name
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
    {
        bail!(
            "{} holds an unsafe path {}: refusing to extract",
            archive.display(),
            name.display()
        );
    }
    Ok(name.to_path_buf())
}

fn extract(archive: &Path, kind: Archive, dir: &Path) -> Result<()> {
    eprintln!("xtask | extracting {}", archive.display());
    let file = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    match kind {
        Archive::TarGz => {
            let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
            for entry in tar
                .entries()
                .with_context(|| format!("reading {}", archive.display()))?
            {
                let mut entry = entry.with_context(|| format!("reading {}", archive.display()))?;
                let rel = safe_relative(&entry.path()?, archive)?;
                let out = dir.join(&rel);
                if let Some(parent) = out.parent() {
                    fs::create_dir_all(parent)?;
                }
                entry.unpack(&out).with_context(|| {
                    format!("extracting {} from {}", rel.display(), archive.display())
                })?;
            }
        }
        Archive::Zip => {
            let mut zip = zip::ZipArchive::new(file)
                .with_context(|| format!("{} is not a zip archive", archive.display()))?;
            for i in 0..zip.len() {
                let mut entry = zip.by_index(i)?;
                let rel = safe_relative(Path::new(entry.name()), archive)?;
                let out = dir.join(&rel);
                if entry.is_dir() {
                    fs::create_dir_all(&out)?;
                    continue;
                }
                if let Some(parent) = out.parent() {
                    fs::create_dir_all(parent)?;
                }
                let mut target =
                    File::create(&out).with_context(|| format!("creating {}", out.display()))?;
                io::copy(&mut entry, &mut target).with_context(|| {
                    format!("extracting {} from {}", rel.display(), archive.display())
                })?;
            }
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// reader never sees a half-written file.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(ssl_files::write_atomic(path, bytes)?)
}

/// `cargo xtask check-imagenet DIR`: validates an ImageNet-style folder.
pub fn check_imagenet(dir: &Path) -> Result<String> {
    const LAYOUT: &str = "expected DIR/train/<wnid>/*.JPEG and DIR/val/<wnid>/*.JPEG \
        (val sorted into class folders, e.g. with the usual valprep script), the same \
        class folders in both";
    let mut report = String::new();
    let mut classes_of = Vec::new();
    for split in ["train", "val"] {
        let split_dir = dir.join(split);
        let entries = fs::read_dir(&split_dir)
            .with_context(|| format!("{} is missing: {LAYOUT}", split_dir.display()))?;
        let mut classes = Vec::new();
        let mut images = 0usize;
        let mut empty = Vec::new();
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let count = fs::read_dir(entry.path())?
                .filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().to_lowercase();
                    n.ends_with(".jpeg") || n.ends_with(".jpg") || n.ends_with(".png")
                })
                .count();
            if count == 0 {
                empty.push(name.clone());
            }
            images += count;
            classes.push(name);
        }
        classes.sort();
        if classes.is_empty() {
            bail!("{} has no class folders: {LAYOUT}", split_dir.display());
        }
        if !empty.is_empty() {
            bail!(
                "{}: {} class folder(s) hold no images, e.g. {}",
                split_dir.display(),
                empty.len(),
                empty[0]
            );
        }
        report.push_str(&format!(
            "{split}: {} classes, {images} images\n",
            classes.len()
        ));
        classes_of.push(classes);
    }
    if classes_of[0] != classes_of[1] {
        let only_train: Vec<_> = classes_of[0]
            .iter()
            .filter(|c| !classes_of[1].contains(c))
            .take(3)
            .collect();
        bail!("train and val class folders differ (e.g. only in train: {only_train:?}): {LAYOUT}");
    }
    if classes_of[0].len() != 1000 && classes_of[0].len() != 100 {
        report.push_str(&format!(
            "note: {} classes (ImageNet has 1000, ImageNet-100 has 100)\n",
            classes_of[0].len()
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A CIFAR-10-shaped archive built in the test: three tiny record files.
    fn archive_bytes() -> Vec<u8> {
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for name in ["data_batch_1.bin", "data_batch_5.bin", "test_batch.bin"] {
            // Pseudo-random (incompressible) bytes, so the archive is large
            // enough to cut in the middle.
            let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ name.len() as u64;
            let body: Vec<u8> = (0..3073 * 8)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    (state >> 56) as u8
                })
                .collect();
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(
                &mut header,
                format!("cifar-10-batches-bin/{name}"),
                &body[..],
            )
            .unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    /// Serves `body` on 127.0.0.1 with Range support. The first
    /// `cut_first` responses close the connection halfway through.
    /// Bounded: stops after `max_requests`.
    fn serve(
        body: Vec<u8>,
        cut_first: usize,
        max_requests: usize,
    ) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/cifar-10-binary.tar.gz",
            listener.local_addr().unwrap()
        );
        let requests = Arc::new(AtomicUsize::new(0));
        let ranged = Arc::new(AtomicUsize::new(0));
        let (r, g) = (requests.clone(), ranged.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().take(max_requests) {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut start = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        start = v.trim().trim_end_matches('-').parse().unwrap();
                        g.fetch_add(1, Ordering::SeqCst);
                    }
                }
                let n = r.fetch_add(1, Ordering::SeqCst);
                let rest = &body[start.min(body.len())..];
                let head = if start > 0 {
                    format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {}-{}/{}\r\nConnection: close\r\n\r\n",
                        rest.len(), start, body.len() - 1, body.len()
                    )
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        rest.len()
                    )
                };
                let _ = stream.write_all(head.as_bytes());
                let send = if n < cut_first {
                    &rest[..rest.len() / 2]
                } else {
                    rest
                };
                let _ = stream.write_all(send);
            }
        });
        (url, requests, ranged)
    }

    fn test_source(md5: &'static str) -> Source {
        Source {
            md5,
            ..SOURCES[0].clone()
        }
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    #[test]
    fn good_download_then_idempotent() {
        let body = archive_bytes();
        let md5 = leak(format!("{:x}", Md5::digest(&body)));
        let (url, requests, _) = serve(body, 0, 4);
        let dir = tempfile::tempdir().unwrap();
        let src = test_source(md5);
        let first = fetch(&src, dir.path(), Some(&url)).unwrap();
        assert_eq!(first, Outcome::Downloaded { resumed_from: 0 });
        assert!(dir
            .path()
            .join("cifar-10-batches-bin/test_batch.bin")
            .exists());
        let second = fetch(&src, dir.path(), Some(&url)).unwrap();
        assert_eq!(second, Outcome::AlreadyPresent);
        assert_eq!(
            requests.load(Ordering::SeqCst),
            1,
            "the second call must not download"
        );
    }

    #[test]
    fn interrupted_download_resumes_with_range() {
        let body = archive_bytes();
        let md5 = leak(format!("{:x}", Md5::digest(&body)));
        let (url, requests, ranged) = serve(body.clone(), 1, 4);
        let dir = tempfile::tempdir().unwrap();
        let outcome = fetch(&test_source(md5), dir.path(), Some(&url)).unwrap();
        assert_eq!(outcome, Outcome::Downloaded { resumed_from: 0 });
        assert_eq!(
            requests.load(Ordering::SeqCst),
            2,
            "one cut transfer, one resumed"
        );
        assert_eq!(
            ranged.load(Ordering::SeqCst),
            1,
            "the retry must ask for the rest only"
        );
        assert_eq!(
            fs::read(dir.path().join("cifar-10-binary.tar.gz")).unwrap(),
            body
        );
    }

    #[test]
    fn partial_file_from_an_earlier_run_is_resumed() {
        let body = archive_bytes();
        let md5 = leak(format!("{:x}", Md5::digest(&body)));
        let (url, _, ranged) = serve(body.clone(), 0, 4);
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("cifar-10-binary.tar.gz.part"),
            &body[..1000],
        )
        .unwrap();
        let outcome = fetch(&test_source(md5), dir.path(), Some(&url)).unwrap();
        assert_eq!(outcome, Outcome::Downloaded { resumed_from: 1000 });
        assert_eq!(ranged.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn checksum_mismatch_is_reported_and_not_kept_as_valid() {
        let (url, _, _) = serve(archive_bytes(), 0, 4);
        let dir = tempfile::tempdir().unwrap();
        let src = test_source("00000000000000000000000000000000");
        let err = fetch(&src, dir.path(), Some(&url)).unwrap_err().to_string();
        assert!(
            err.contains("checksum mismatch") && err.contains("00000000000000000000000000000000"),
            "{err}"
        );
        assert!(!dir.path().join("cifar-10-binary.tar.gz").exists());
        assert!(!dir.path().join(".cifar10.ok").exists());
        assert!(dir.path().join("cifar-10-binary.tar.gz.corrupt").exists());
    }

    #[test]
    fn published_checksums_are_well_formed() {
        for s in SOURCES {
            assert_eq!(s.md5.len(), 32, "{}", s.name);
            assert!(s.md5.chars().all(|c| c.is_ascii_hexdigit()), "{}", s.name);
        }
        assert!(source("imagenet")
            .unwrap_err()
            .to_string()
            .contains("check-imagenet"));
    }

    #[test]
    fn imagenet_folder_check() {
        let dir = tempfile::tempdir().unwrap();
        for split in ["train", "val"] {
            for class in ["n01440764", "n01443537"] {
                let d = dir.path().join(split).join(class);
                fs::create_dir_all(&d).unwrap();
                fs::write(d.join("a.JPEG"), b"x").unwrap();
            }
        }
        let report = check_imagenet(dir.path()).unwrap();
        assert!(report.contains("train: 2 classes, 2 images"), "{report}");
        fs::create_dir_all(dir.path().join("val/n99999999")).unwrap();
        let err = check_imagenet(dir.path()).unwrap_err().to_string();
        assert!(err.contains("hold no images"), "{err}");
    }
}
