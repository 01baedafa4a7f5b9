//! A read-only memory-mapped file, so that binary datasets larger than memory
//! (STL-10's 2.7 GB `unlabeled_X.bin`) are paged in on demand, not loaded.

use std::path::{Path, PathBuf};

use crate::error::DataError;

/// The bytes of a file, memory-mapped (an empty file maps to no bytes).
#[derive(Debug)]
pub struct MappedFile {
    path: PathBuf,
    map: Option<memmap2::Mmap>,
}

impl MappedFile {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        let map = if len == 0 {
            None // mmap of an empty file is an error on Linux
        } else {
            // SAFETY: the dataset files are read-only inputs; a concurrent truncation by another
            // process is the one way this can fault, as with any memory-mapped reader.
            #[allow(unsafe_code)]
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| DataError::io(path, e))?;
            Some(map)
        };
        Ok(Self {
            path: path.to_path_buf(),
            map,
        })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks that the file is a whole number of `record_bytes` records and
    /// returns that number; the error names the offset of the partial record.
    pub fn whole_records(&self, record_bytes: usize) -> Result<usize, DataError> {
        let len = self.bytes().len();
        let partial = len % record_bytes;
        if partial > 0 {
            return Err(DataError::PartialRecord {
                path: self.path.clone(),
                len: len as u64,
                record_bytes: record_bytes as u64,
                offset: (len - partial) as u64,
            });
        }
        Ok(len / record_bytes)
    }
}
