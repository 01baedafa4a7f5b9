//! TensorBoard event files: what `tensorboard --logdir` (and any reader of
//! TensorFlow's event format) shows of a run.
//!
//! A file `events.out.tfevents.<unix seconds>.ssl-train.<pid>` per session
//! in the run directory: TFRecord framing (little-endian length, masked
//! CRC32C of the length, the bytes, masked CRC32C of the bytes; CRC from
//! the `crc32c` crate) around `Event` protobufs (`prost`, with the few
//! messages of TensorFlow's `event.proto` / `summary.proto` that are
//! written derived here, so no `protoc` at build time). The first event
//! names the format version (`brain.Event:2`); every later one carries a
//! `Summary` of scalars (`simple_value`) or one histogram (`histo`).
//!
//! Each record is written whole and flushed, so a killed run keeps every
//! complete event; [`truncate_after`] drops what an earlier session wrote
//! after a checkpoint's step (and a torn last record), as the run
//! directory does with `metrics.jsonl` on resume.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use crate::error::{Context, Result};

/// `tensorflow.Event` (the fields written: wall time, step, the file
/// version of the first event, a summary).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The global step.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// `brain.Event:2` in a file's first event.
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    /// Scalars or a histogram.
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`: a tag and one of a scalar or a histogram
/// (both `optional`, so a scalar of 0 is still present on the wire, as
/// the `oneof` of the original message requires).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    #[prost(message, optional, tag = "5")]
    pub histo: Option<HistogramProto>,
}

/// `tensorflow.HistogramProto`: bucket `i` counts the values in
/// `(bucket_limit[i-1], bucket_limit[i]]` (the first from `min`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HistogramProto {
    #[prost(double, tag = "1")]
    pub min: f64,
    #[prost(double, tag = "2")]
    pub max: f64,
    #[prost(double, tag = "3")]
    pub num: f64,
    #[prost(double, tag = "4")]
    pub sum: f64,
    #[prost(double, tag = "5")]
    pub sum_squares: f64,
    #[prost(double, repeated, tag = "6")]
    pub bucket_limit: Vec<f64>,
    #[prost(double, repeated, tag = "7")]
    pub bucket: Vec<f64>,
}

impl HistogramProto {
    /// The histogram of the finite `values` in `buckets` equal-width
    /// buckets from their minimum to their maximum. `None` when no value is
    /// finite.
    pub fn of(values: &[f64], buckets: usize) -> Option<Self> {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let min = finite.iter().copied().reduce(f64::min)?;
        let max = finite.iter().copied().reduce(f64::max)?;
        let n = buckets.max(1);
        let width = (max - min) / n as f64;
        let (bucket_limit, bucket) = if width > 0.0 {
            let mut counts = vec![0.0; n];
            for v in &finite {
                let i = (((v - min) / width) as usize).min(n - 1);
                counts[i] += 1.0;
            }
            let mut limits: Vec<f64> = (1..=n).map(|i| min + width * i as f64).collect();
            limits[n - 1] = max;
            (limits, counts)
        } else {
            (vec![max], vec![finite.len() as f64])
        };
        Some(Self {
            min,
            max,
            num: finite.len() as f64,
            sum: finite.iter().sum(),
            sum_squares: finite.iter().map(|v| v * v).sum(),
            bucket_limit,
            bucket,
        })
    }
}

/// The prefix of event file names (TensorBoard reads the files whose
/// name contains `tfevents`).
pub const EVENT_FILE_PREFIX: &str = "events.out.tfevents.";

/// TFRecord's CRC: CRC32C rotated right by 15 bits plus a constant.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
        .rotate_right(15)
        .wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked CRC, the data, its masked CRC.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// The records of a TFRecord file's bytes, each as `(start, end)` of the
/// whole framed record, up to the first torn or damaged one.
pub fn records(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= 12 {
        let len_bytes = &bytes[at..at + 8];
        let crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
        if crc != masked_crc32c(len_bytes) {
            break;
        }
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
        let Some(end) = usize::try_from(len)
            .ok()
            .and_then(|l| (at + 12).checked_add(l))
            .and_then(|e| e.checked_add(4))
            .filter(|&e| e <= bytes.len())
        else {
            break;
        };
        let data = &bytes[at + 12..end - 4];
        let crc = u32::from_le_bytes(bytes[end - 4..end].try_into().expect("4 bytes"));
        if crc != masked_crc32c(data) {
            break;
        }
        out.push((at, end));
        at = end;
    }
    out
}

/// The events of an event file (up to a torn or damaged record).
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    records(&bytes)
        .into_iter()
        .map(|(a, b)| {
            Event::decode(&bytes[a + 12..b - 4])
                .with_context(|| format!("{}: a record is not an Event", path.display()))
        })
        .collect()
}

/// The event files in `dir`, sorted by name (which starts with the time
/// they were created).
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(EVENT_FILE_PREFIX) && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Rewrites each event file in `dir` (but `except`) without the events
/// after `step` and without a torn or damaged tail, atomically; files with
/// nothing to drop are left alone.
pub fn truncate_after(dir: &Path, step: usize, except: Option<&Path>) -> Result<()> {
    for path in event_files(dir)? {
        if except.is_some_and(|e| e == path) {
            continue;
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let all = records(&bytes);
        let mut kept = Vec::with_capacity(bytes.len());
        for &(a, b) in &all {
            let event = Event::decode(&bytes[a + 12..b - 4])
                .with_context(|| format!("{}: a record is not an Event", path.display()))?;
            if event.step <= step as i64 {
                kept.extend_from_slice(&bytes[a..b]);
            }
        }
        if kept.len() != bytes.len() {
            ssl_files::write_atomic(&path, &kept)
                .with_context(|| format!("dropping the events after step {step}"))?;
        }
    }
    Ok(())
}

/// Removes the event files in `dir` (a run started afresh in the
/// directory of an earlier one).
pub fn remove_event_files(dir: &Path) -> Result<()> {
    for path in event_files(dir)? {
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// An event file being written (one per session of a run).
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    file: File,
}

impl EventWriter {
    /// Creates a new event file in `dir` (a name no other file has) and
    /// writes its first event, the file version.
    pub fn create(dir: &Path) -> Result<Self> {
        let wall = now();
        let stem = format!(
            "{EVENT_FILE_PREFIX}{}.ssl-train.{}",
            wall as u64,
            std::process::id()
        );
        let mut n = 0usize;
        let (path, file) = loop {
            let path = dir.join(if n == 0 {
                stem.clone()
            } else {
                format!("{stem}.{n}")
            });
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => break (path, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => {
                    return Err(e).with_context(|| format!("creating {}", path.display()));
                }
            }
        };
        let mut w = Self { path, file };
        w.write(&Event {
            wall_time: wall,
            step: 0,
            file_version: Some("brain.Event:2".into()),
            summary: None,
        })?;
        Ok(w)
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one event as one record and flushes it.
    pub fn write(&mut self, event: &Event) -> Result<()> {
        self.file
            .write_all(&frame(&event.encode_to_vec()))
            .and_then(|()| self.file.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Writes `scalars` (tag, value) at `step` in one event.
    pub fn scalars(&mut self, step: usize, scalars: &[(&str, f64)]) -> Result<()> {
        let value = scalars
            .iter()
            .map(|&(tag, v)| SummaryValue {
                tag: tag.to_string(),
                simple_value: Some(v as f32),
                histo: None,
            })
            .collect();
        self.write(&Event {
            wall_time: now(),
            step: step as i64,
            file_version: None,
            summary: Some(Summary { value }),
        })
    }

    /// Writes the histogram `histo` under `tag` at `step`.
    pub fn histogram(&mut self, step: usize, tag: &str, histo: HistogramProto) -> Result<()> {
        self.write(&Event {
            wall_time: now(),
            step: step as i64,
            file_version: None,
            summary: Some(Summary {
                value: vec![SummaryValue {
                    tag: tag.to_string(),
                    simple_value: None,
                    histo: Some(histo),
                }],
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_matches_tensorflow() {
        // CRC32C's check value, and the masked CRCs the `tensorboard`
        // package's reader computes (its `masked_crc32c`).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
        assert_eq!(masked_crc32c(&5u64.to_le_bytes()), 0x3e04_b2ea);
    }

    #[test]
    fn histograms_count_every_finite_value_once() {
        let h = HistogramProto::of(&[0.0, 1.0, 2.0, 3.0, f64::NAN, 4.0], 4).unwrap();
        assert_eq!(h.num, 5.0);
        assert_eq!(h.bucket.iter().sum::<f64>(), 5.0);
        assert_eq!(h.bucket_limit, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(h.bucket, [1.0, 1.0, 1.0, 2.0]);
        assert_eq!((h.min, h.max, h.sum, h.sum_squares), (0.0, 4.0, 10.0, 30.0));
        let flat = HistogramProto::of(&[2.0, 2.0], 10).unwrap();
        assert_eq!((flat.bucket_limit, flat.bucket), (vec![2.0], vec![2.0]));
        assert!(HistogramProto::of(&[f64::NAN], 3).is_none());
    }

    #[test]
    fn a_torn_or_damaged_record_ends_the_file() {
        let a = frame(b"first");
        let b = frame(b"second");
        let mut bytes = [a.clone(), b.clone()].concat();
        assert_eq!(
            records(&bytes),
            [(0, a.len()), (a.len(), a.len() + b.len())]
        );
        bytes.truncate(bytes.len() - 1);
        assert_eq!(records(&bytes), [(0, a.len())]);
        let mut bytes = [a.clone(), b].concat();
        bytes[a.len() + 13] ^= 1; // a bit of the second record's data
        assert_eq!(records(&bytes), [(0, a.len())]);
    }
}
