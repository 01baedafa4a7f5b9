//! ImageNet-style class folders (`root/<class>/**/<image>.{jpg,jpeg,png}`),
//! as torchvision's `ImageFolder`: classes are the sub-folder names sorted,
//! files are found recursively and sorted, images are decoded lazily.

use std::path::{Path, PathBuf};

use crate::augment::random_resized_crop::CropBox;
use crate::dataset::{Dataset, PartSample, Sample};
use crate::error::DataError;
use crate::image::RgbImage;
use crate::jpeg;

/// Extensions read (case-insensitive): the subset of torchvision's
/// `IMG_EXTENSIONS` this crate decodes.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// A list of labelled image files, decoded on [`Dataset::get`] (JPEG as
/// Pillow decodes it, [`crate::jpeg`]). [`Dataset::get_part`] decodes only
/// the part of a JPEG a crop needs, with the same pixels there.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    classes: Vec<String>,
    entries: Vec<(PathBuf, u32)>,
    partial_decode: bool,
}

impl ImageFolder {
    /// Scans `root`: one class per sub-folder (sorted by name), every image
    /// below it (sorted by path). A class folder without images is an error,
    /// as in torchvision.
    pub fn open(root: &Path) -> Result<Self, DataError> {
        let mut classes: Vec<String> = read_dir_sorted(root)?
            .into_iter()
            .filter(|p| p.is_dir())
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        classes.sort();
        if classes.is_empty() {
            return Err(DataError::Layout {
                path: root.to_path_buf(),
                message: "no class sub-folder found (expected root/<class>/<image>.jpg)".into(),
            });
        }
        let mut entries = Vec::new();
        for (c, class) in classes.iter().enumerate() {
            let dir = root.join(class);
            let before = entries.len();
            collect_images(&dir, c as u32, &mut entries)?;
            if entries.len() == before {
                return Err(DataError::Layout {
                    path: dir,
                    message: format!(
                        "class folder holds no image with extension {}",
                        IMAGE_EXTENSIONS.join("/")
                    ),
                });
            }
        }
        Ok(Self {
            classes,
            entries,
            partial_decode: true,
        })
    }

    /// Wraps an explicit list of `(file, class)`; fails on a class `>= classes.len()`.
    pub fn from_entries(
        classes: Vec<String>,
        entries: Vec<(PathBuf, u32)>,
    ) -> Result<Self, DataError> {
        if let Some((p, c)) = entries.iter().find(|(_, c)| *c as usize >= classes.len()) {
            return Err(DataError::Layout {
                path: p.clone(),
                message: format!("class {c} is outside 0..{}", classes.len()),
            });
        }
        Ok(Self {
            classes,
            entries,
            partial_decode: true,
        })
    }

    /// The same folder decoding every JPEG whole in [`Dataset::get_part`]
    /// (`false`) or, the default, only the part asked for (`true`). The
    /// pixels a caller reads are the same either way; this exists to
    /// compare the two.
    pub fn with_partial_decode(mut self, partial: bool) -> Self {
        self.partial_decode = partial;
        self
    }

    /// Class names; index = label.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The `(file, label)` list.
    pub fn entries(&self) -> &[(PathBuf, u32)] {
        &self.entries
    }
}

/// Whether `path` has one of [`IMAGE_EXTENSIONS`].
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        out.push(entry.map_err(|e| DataError::io(dir, e))?.path());
    }
    out.sort();
    Ok(out)
}

fn collect_images(dir: &Path, class: u32, out: &mut Vec<(PathBuf, u32)>) -> Result<(), DataError> {
    for path in read_dir_sorted(dir)? {
        if path.is_dir() {
            collect_images(&path, class, out)?;
        } else if is_image_file(&path) {
            out.push((path, class));
        }
    }
    Ok(())
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn num_classes(&self) -> usize {
        self.classes.len()
    }

    fn get(&self, index: usize) -> Result<Sample, DataError> {
        let (path, label) = self.entries.get(index).ok_or(DataError::IndexOutOfRange {
            index,
            len: self.entries.len(),
        })?;
        Ok(Sample {
            image: RgbImage::decode_file(path, index)?,
            label: Some(*label),
        })
    }

    fn get_part(
        &self,
        index: usize,
        need: &mut dyn FnMut(usize, usize) -> Option<CropBox>,
    ) -> Result<PartSample, DataError> {
        let (path, label) = self.entries.get(index).ok_or(DataError::IndexOutOfRange {
            index,
            len: self.entries.len(),
        })?;
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let bad = |message: String| DataError::Decode {
            path: path.to_path_buf(),
            entry: index,
            message,
        };
        let label = Some(*label);
        if !(self.partial_decode && jpeg::is_jpeg(&bytes)) {
            let image = RgbImage::decode_bytes(&bytes).map_err(bad)?;
            need(image.height(), image.width());
            return Ok(PartSample {
                sample: Sample { image, label },
                origin: (0, 0),
            });
        }
        let header = jpeg::read_header(&bytes).map_err(bad)?;
        let (image, left, top) = match need(header.height, header.width) {
            Some(b) => jpeg::decode_region(&bytes, &header, b).map_err(bad)?,
            None => (jpeg::decode(&bytes).map_err(bad)?, 0, 0),
        };
        Ok(PartSample {
            sample: Sample { image, label },
            origin: (left, top),
        })
    }
}
