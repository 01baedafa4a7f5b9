//! Named tensors in safetensors files: atomic writing, checked reading, and
//! the name/shape comparison that checkpoint and export loading report.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, View};
use tch::{Kind, Tensor};

use crate::ModelError;

/// Metadata key holding the checksum of the tensor data.
const CHECKSUM_KEY: &str = "ssl_models.checksum";

/// Tensors by name, in name order.
pub(crate) type NamedTensors = BTreeMap<String, Tensor>;

/// Every variable of a VarStore, sorted by name.
pub(crate) fn sorted_variables(vs: &tch::nn::VarStore) -> BTreeMap<String, Tensor> {
    vs.variables().into_iter().collect()
}

/// (libtorch kind, safetensors dtype) pairs this crate stores.
const KINDS: [(Kind, Dtype); 10] = [
    (Kind::Bool, Dtype::BOOL),
    (Kind::Uint8, Dtype::U8),
    (Kind::Int8, Dtype::I8),
    (Kind::Int16, Dtype::I16),
    (Kind::Int, Dtype::I32),
    (Kind::Int64, Dtype::I64),
    (Kind::BFloat16, Dtype::BF16),
    (Kind::Half, Dtype::F16),
    (Kind::Float, Dtype::F32),
    (Kind::Double, Dtype::F64),
];

fn dtype_of(kind: Kind) -> Option<Dtype> {
    KINDS.iter().find(|(k, _)| *k == kind).map(|(_, d)| *d)
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    KINDS.iter().find(|(_, d)| *d == dtype).map(|(k, _)| *k)
}

/// A tensor copied to host bytes (little-endian, row-major), ready for
/// safetensors.
struct HostTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl HostTensor {
    fn new(name: &str, tensor: &Tensor) -> Result<HostTensor, ModelError> {
        let context = || format!("copying tensor `{name}` to the host");
        let kind = tensor.f_kind().map_err(ModelError::tch(context()))?;
        let dtype = dtype_of(kind).ok_or_else(|| {
            ModelError::Config(format!(
                "{}: dtype {kind:?} cannot be stored in safetensors",
                context()
            ))
        })?;
        let data = ssl_bytes::host_bytes(tensor).map_err(ModelError::tch(context()))?;
        let shape = tensor.size().iter().map(|&d| d as usize).collect();
        Ok(HostTensor { dtype, shape, data })
    }
}

impl View for &HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// The workspace's checksum ([`ssl_bytes::Checksum`], FNV-1a) over the
/// names and data of the tensors in name order: detects damaged tensor
/// bytes, which the safetensors header alone (offsets and total length)
/// does not.
fn checksum<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> u64 {
    let mut sum = ssl_bytes::Checksum::new();
    for (name, data) in tensors {
        sum.update(name.as_bytes());
        sum.update(data);
    }
    sum.finish()
}

/// Serialises named tensors (any device, any layout) as safetensors with
/// `metadata` and a data checksum in the header.
pub(crate) fn encode(
    tensors: &BTreeMap<String, Tensor>,
    mut metadata: HashMap<String, String>,
) -> Result<Vec<u8>, ModelError> {
    let host = tensors
        .iter()
        .map(|(name, t)| Ok((name.as_str(), HostTensor::new(name, t)?)))
        .collect::<Result<Vec<_>, ModelError>>()?;
    let sum = checksum(host.iter().map(|(name, t)| (*name, t.data.as_slice())));
    metadata.insert(CHECKSUM_KEY.to_string(), format!("{sum:016x}"));
    safetensors::serialize(host.iter().map(|(name, t)| (*name, t)), &Some(metadata))
        .map_err(|e| ModelError::Config(format!("cannot serialise tensors: {e}")))
}

/// Reads a file written by [`encode`]: its tensors (on the CPU) and header
/// metadata. A file that is truncated, not safetensors, or whose data does not
/// match its checksum is reported as [`ModelError::Damaged`] naming it.
pub(crate) fn decode(path: &Path) -> Result<(NamedTensors, HashMap<String, String>), ModelError> {
    let bytes = std::fs::read(path).map_err(ModelError::io("read", path))?;
    let damaged = |reason: String| ModelError::Damaged {
        path: path.to_path_buf(),
        reason,
    };
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| damaged(format!("not a complete safetensors file ({e:?})")))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| damaged(format!("unreadable safetensors header ({e:?})")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let mut views = file.tensors();
    views.sort_by(|a, b| a.0.cmp(&b.0));
    let expected = metadata
        .get(CHECKSUM_KEY)
        .ok_or_else(|| damaged(format!("no `{CHECKSUM_KEY}` in the header")))?;
    let actual = format!(
        "{:016x}",
        checksum(views.iter().map(|(n, v)| (n.as_str(), v.data())))
    );
    if *expected != actual {
        return Err(damaged(format!(
            "tensor data checksum is {actual}, the header says {expected} (corrupted bytes)"
        )));
    }
    let mut tensors = BTreeMap::new();
    for (name, view) in views {
        let kind = kind_of(view.dtype()).ok_or_else(|| {
            damaged(format!(
                "tensor `{name}` has an unsupported dtype {:?}",
                view.dtype()
            ))
        })?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let tensor = Tensor::f_from_data_size(view.data(), &shape, kind)
            .map_err(|e| damaged(format!("tensor `{name}` cannot be rebuilt ({e})")))?;
        tensors.insert(name, tensor);
    }
    Ok((tensors, metadata))
}

/// Every difference between the tensors `expected` (the model's) and those
/// `found` (a file's, or the online network's), one line each, naming the
/// tensor: missing, unexpected, shape or dtype differs. Empty when they match.
pub(crate) fn mismatches(
    expected: &BTreeMap<String, Tensor>,
    found: &BTreeMap<String, Tensor>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, want) in expected {
        match found.get(name) {
            None => out.push(format!(
                "missing `{name}` (expected shape {:?})",
                want.size()
            )),
            Some(got) if got.size() != want.size() => out.push(format!(
                "`{name}`: found shape {:?}, expected {:?}",
                got.size(),
                want.size()
            )),
            Some(got) if got.kind() != want.kind() => out.push(format!(
                "`{name}`: found dtype {:?}, expected {:?}",
                got.kind(),
                want.kind()
            )),
            Some(_) => {}
        }
    }
    for (name, got) in found {
        if !expected.contains_key(name) {
            out.push(format!("unexpected `{name}` (shape {:?})", got.size()));
        }
    }
    out
}

/// Checks `found` against `expected` (reporting every mismatch by name) and
/// copies each found tensor into the model's tensor of the same name.
pub(crate) fn copy_into(
    path: &Path,
    expected: &BTreeMap<String, Tensor>,
    found: &BTreeMap<String, Tensor>,
) -> Result<(), ModelError> {
    let mismatches = mismatches(expected, found);
    if !mismatches.is_empty() {
        return Err(ModelError::Mismatch {
            path: path.to_path_buf(),
            mismatches,
        });
    }
    for (name, target) in expected {
        if let Some(source) = found.get(name) {
            let mut target = target.shallow_clone();
            tch::no_grad(|| target.f_copy_(source)).map_err(ModelError::tch(format!(
                "copying `{name}` from {}",
                path.display()
            )))?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, flushed and synced, then renamed over `path`. A crash or error
/// leaves any previous `path` intact.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    ssl_files::write_atomic(path, bytes).map_err(ModelError::io("write", path))
}
