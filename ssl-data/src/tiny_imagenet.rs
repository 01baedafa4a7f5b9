//! Tiny-ImageNet-200 as unpacked from `tiny-imagenet-200.zip`
//! (`docs/reference.md` §5.5): `wnids.txt` (200 WordNet ids),
//! `train/<wnid>/images/*.JPEG`, `val/images/*.JPEG` labelled by
//! `val/val_annotations.txt` (`file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1`).
//!
//! Labels are the index of the wnid in sorted order, which is what
//! torchvision's `ImageFolder` gives over `train/`.

use std::collections::HashMap;
use std::path::Path;

use crate::error::DataError;
use crate::image_folder::{is_image_file, ImageFolder};

/// The labelled splits (the test split has no labels in the distribution).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TinyImageNetSplit {
    /// 500 images per class, 100 000 in all.
    Train,
    /// 50 per class, 10 000 in all.
    Val,
}

/// Opens `split` of the Tiny-ImageNet folder `root` as a lazily decoded
/// [`ImageFolder`]. Errors name the file and line of a malformed
/// `wnids.txt` / `val_annotations.txt` entry.
pub fn open_tiny_imagenet(root: &Path, split: TinyImageNetSplit) -> Result<ImageFolder, DataError> {
    let wnids_path = root.join("wnids.txt");
    let text = std::fs::read_to_string(&wnids_path).map_err(|e| DataError::io(&wnids_path, e))?;
    let mut wnids: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    wnids.sort();
    if let Some(w) = wnids.windows(2).find(|w| w[0] == w[1]) {
        return Err(DataError::Layout {
            path: wnids_path,
            message: format!("wnid {} is listed twice", w[0]),
        });
    }
    if wnids.is_empty() {
        return Err(DataError::Layout {
            path: wnids_path,
            message: "no wnid listed".into(),
        });
    }
    let index: HashMap<&str, u32> = wnids
        .iter()
        .enumerate()
        .map(|(i, w)| (w.as_str(), i as u32))
        .collect();
    let mut entries = Vec::new();
    match split {
        TinyImageNetSplit::Train => {
            for (c, wnid) in wnids.iter().enumerate() {
                let dir = root.join("train").join(wnid).join("images");
                let mut files: Vec<_> = std::fs::read_dir(&dir)
                    .map_err(|e| DataError::io(&dir, e))?
                    .map(|e| e.map(|e| e.path()).map_err(|err| DataError::io(&dir, err)))
                    .collect::<Result<_, _>>()?;
                files.retain(|p| is_image_file(p));
                files.sort();
                if files.is_empty() {
                    return Err(DataError::Layout {
                        path: dir,
                        message: format!("no image for class {wnid}"),
                    });
                }
                entries.extend(files.into_iter().map(|p| (p, c as u32)));
            }
        }
        TinyImageNetSplit::Val => {
            let ann = root.join("val").join("val_annotations.txt");
            let text = std::fs::read_to_string(&ann).map_err(|e| DataError::io(&ann, e))?;
            for (line_no, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let mut fields = line.split('\t');
                let (Some(file), Some(wnid)) = (fields.next(), fields.next()) else {
                    return Err(DataError::Layout {
                        path: ann,
                        message: format!(
                            "line {}: expected `file<TAB>wnid<TAB>...`, got {line:?}",
                            line_no + 1
                        ),
                    });
                };
                let Some(&c) = index.get(wnid.trim()) else {
                    return Err(DataError::Layout {
                        path: ann,
                        message: format!("line {}: wnid {wnid:?} is not in wnids.txt", line_no + 1),
                    });
                };
                entries.push((root.join("val").join("images").join(file.trim()), c));
            }
        }
    }
    ImageFolder::from_entries(wnids, entries)
}
