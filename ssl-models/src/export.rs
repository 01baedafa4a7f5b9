//! Export of a trained encoder: torchvision-named safetensors, and the
//! Detectron2 backbone pickle used for the transfer experiments (paper
//! Table 3), converted as MoCo's `convert-pretrain-to-detectron2.py` does.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::pickle::Pickle;
use crate::tensor_file::{self, sorted_variables};
use crate::ModelError;

/// The variables of `vs` whose names start with `prefix`, with the prefix
/// removed (e.g. prefix `encoder.` turns `encoder.conv1.weight` into
/// torchvision's `conv1.weight`). An empty prefix takes every variable.
pub fn encoder_tensors(vs: &VarStore, prefix: &str) -> BTreeMap<String, Tensor> {
    sorted_variables(vs)
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|name| (name.to_string(), v)))
        .collect()
}

fn non_empty(
    tensors: BTreeMap<String, Tensor>,
    prefix: &str,
) -> Result<BTreeMap<String, Tensor>, ModelError> {
    if tensors.is_empty() {
        return Err(ModelError::Config(format!(
            "no variable name starts with `{prefix}`"
        )));
    }
    Ok(tensors)
}

/// Writes the encoder (the variables under `prefix`, prefix removed) to
/// `path` as safetensors with torchvision's `state_dict()` names,
/// atomically; returns the number of tensors written.
pub fn export_encoder(vs: &VarStore, prefix: &str, path: &Path) -> Result<usize, ModelError> {
    let tensors = non_empty(encoder_tensors(vs, prefix), prefix)?;
    let header = HashMap::from([("format".to_string(), "pt".to_string())]);
    tensor_file::write_atomic(path, &tensor_file::encode(&tensors, header)?)?;
    Ok(tensors.len())
}

/// Loads an encoder written by [`export_encoder`] into the variables of `vs`
/// under `prefix`, checking names, shapes and dtypes first (every mismatch
/// reported by name).
pub fn load_encoder(vs: &VarStore, prefix: &str, path: &Path) -> Result<(), ModelError> {
    let expected = non_empty(encoder_tensors(vs, prefix), prefix)?;
    let (found, _) = tensor_file::decode(path)?;
    tensor_file::copy_into(path, &expected, &found)
}

/// MoCo's renaming of a torchvision ResNet key to Detectron2's: keys outside
/// `layerN` get `stem.`; `layer1..4 → res2..5`; `bn1..3 → conv1..3.norm`;
/// `downsample.0 → shortcut`, `downsample.1 → shortcut.norm`.
/// `conv1.weight → stem.conv1.weight`, `layer1.0.bn2.weight →
/// res2.0.conv2.norm.weight`, `layer2.0.downsample.1.running_mean →
/// res3.0.shortcut.norm.running_mean`.
pub fn detectron2_name(torchvision_name: &str) -> String {
    let mut k = torchvision_name.to_string();
    if !k.contains("layer") {
        k = format!("stem.{k}");
    }
    for t in 1..=4 {
        k = k.replace(&format!("layer{t}"), &format!("res{}", t + 1));
    }
    for t in 1..=3 {
        k = k.replace(&format!("bn{t}"), &format!("conv{t}.norm"));
    }
    k.replace("downsample.0", "shortcut")
        .replace("downsample.1", "shortcut.norm")
}

/// Writes the encoder under `prefix` as Detectron2 reads a backbone: a pickle
/// (protocol 3) of `{"model": {detectron2 name: numpy.ndarray},
/// "__author__": author, "matching_heuristics": True}` — MoCo's
/// `convert-pretrain-to-detectron2.py` output, every key of the
/// torchvision `state_dict()` kept (floats as float32, counters as int64).
/// Written atomically; returns the number of arrays.
pub fn export_detectron2(
    vs: &VarStore,
    prefix: &str,
    author: &str,
    path: &Path,
) -> Result<usize, ModelError> {
    let tensors = non_empty(encoder_tensors(vs, prefix), prefix)?;
    let mut renamed = BTreeMap::new();
    for name in tensors.keys() {
        if let Some(previous) = renamed.insert(detectron2_name(name), name) {
            return Err(ModelError::Config(format!(
                "`{previous}` and `{name}` both become `{}` in Detectron2 names",
                detectron2_name(name)
            )));
        }
    }
    let mut p = Pickle::new(3);
    p.empty_dict();
    p.mark();
    p.string("model");
    p.empty_dict();
    p.mark();
    for (d2_name, name) in &renamed {
        p.string(d2_name);
        ndarray(&mut p, name, &tensors[*name])?;
    }
    p.set_items();
    p.string("__author__");
    p.string(author);
    p.string("matching_heuristics");
    p.bool(true);
    p.set_items();
    tensor_file::write_atomic(path, &p.finish())?;
    Ok(renamed.len())
}

/// `numpy.dtype(code, False, True)` with state `(3, '<', None, None, None, -1, -1, 0)`.
fn dtype(p: &mut Pickle, code: &str) {
    p.global("numpy", "dtype");
    p.string(code);
    p.bool(false);
    p.bool(true);
    p.tuple3();
    p.reduce();
    p.mark();
    p.int(3);
    p.string("<");
    p.none();
    p.none();
    p.none();
    p.int(-1);
    p.int(-1);
    p.int(0);
    p.tuple();
    p.build();
}

/// A tensor as numpy pickles an array (floats as float32, integers as
/// int64): `numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')` then
/// `__setstate__((1, shape, dtype, False, raw bytes))`; the `numpy.core`
/// path loads with numpy 1.x and 2.x alike.
fn ndarray(p: &mut Pickle, name: &str, tensor: &Tensor) -> Result<(), ModelError> {
    let (kind, code) = if tensor.is_floating_point() {
        (Kind::Float, "f4")
    } else {
        (Kind::Int64, "i8")
    };
    let data = tensor
        .f_to_kind(kind)
        .and_then(|t| ssl_bytes::host_bytes(&t))
        .map_err(ModelError::tch(format!(
            "copying `{name}` for the Detectron2 export"
        )))?;
    p.global("numpy.core.multiarray", "_reconstruct");
    p.global("numpy", "ndarray");
    p.int(0);
    p.tuple1();
    p.bytes("b", b"b")?;
    p.tuple3();
    p.reduce();
    p.mark();
    p.int(1);
    p.int_tuple(&tensor.size());
    dtype(p, code);
    p.bool(false);
    p.bytes(name, &data)?;
    p.tuple();
    p.build();
    Ok(())
}
