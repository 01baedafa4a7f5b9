//! Export of a trained encoder: torchvision-named safetensors, and the
//! Detectron2 backbone pickle used for the transfer experiments (paper
//! Table 3), converted as MoCo's `convert-pretrain-to-detectron2.py` does.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

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
    let mut pickle = Pickle::new();
    pickle.begin_dict();
    pickle.string("model");
    pickle.begin_dict();
    let mut renamed = BTreeMap::new();
    for name in tensors.keys() {
        if let Some(previous) = renamed.insert(detectron2_name(name), name) {
            return Err(ModelError::Config(format!(
                "`{previous}` and `{name}` both become `{}` in Detectron2 names",
                detectron2_name(name)
            )));
        }
    }
    for (d2_name, name) in &renamed {
        pickle.string(d2_name);
        pickle.ndarray(name, &tensors[*name])?;
    }
    pickle.end_dict();
    pickle.string("__author__");
    pickle.string(author);
    pickle.string("matching_heuristics");
    pickle.bool(true);
    pickle.end_dict();
    tensor_file::write_atomic(path, &pickle.finish())?;
    Ok(renamed.len())
}

/// A writer of the few pickle opcodes needed for dicts of strings and
/// numpy arrays (protocol 3, no memo). Arrays are pickled as numpy does:
/// `numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')` then
/// `__setstate__((1, shape, dtype, False, raw bytes))`; the
/// `numpy.core` path loads with numpy 1.x and 2.x alike.
struct Pickle {
    out: Vec<u8>,
}

impl Pickle {
    fn new() -> Pickle {
        Pickle { out: vec![0x80, 3] } // PROTO 3
    }

    fn begin_dict(&mut self) {
        self.out.extend_from_slice(b"}("); // EMPTY_DICT, MARK
    }

    fn end_dict(&mut self) {
        self.out.push(b'u'); // SETITEMS
    }

    fn string(&mut self, s: &str) {
        self.out.push(b'X'); // BINUNICODE
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    fn bool(&mut self, b: bool) {
        self.out.push(if b { 0x88 } else { 0x89 }); // NEWTRUE / NEWFALSE
    }

    fn int(&mut self, i: i32) {
        self.out.push(b'J'); // BININT
        self.out.extend_from_slice(&i.to_le_bytes());
    }

    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c'); // GLOBAL
        self.out
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }

    fn bytes(&mut self, data: &[u8]) {
        self.out.push(b'B'); // BINBYTES
        self.out
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.out.extend_from_slice(data);
    }

    /// `numpy.dtype(code, False, True)` with state `(3, '<', None, None, None, -1, -1, 0)`.
    fn dtype(&mut self, code: &str) {
        self.global("numpy", "dtype");
        self.string(code);
        self.bool(false);
        self.bool(true);
        self.out.extend_from_slice(&[0x87, b'R', b'(']); // TUPLE3, REDUCE, MARK
        self.int(3);
        self.string("<");
        self.out.extend_from_slice(b"NNN"); // None × 3
        self.int(-1);
        self.int(-1);
        self.int(0);
        self.out.extend_from_slice(b"tb"); // TUPLE, BUILD
    }

    fn ndarray(&mut self, name: &str, tensor: &Tensor) -> Result<(), ModelError> {
        let (kind, code) = if tensor.is_floating_point() {
            (Kind::Float, "f4")
        } else {
            (Kind::Int64, "i8")
        };
        let host = tensor
            .detach()
            .to_device(Device::Cpu)
            .to_kind(kind)
            .contiguous();
        let numel = host.numel();
        let mut data = vec![0u8; numel * kind.elt_size_in_bytes()];
        host.f_copy_data_u8(&mut data, numel)
            .map_err(ModelError::tch(format!(
                "copying `{name}` for the Detectron2 export"
            )))?;
        if data.len() > u32::MAX as usize {
            return Err(ModelError::Config(format!(
                "`{name}` is over 4 GiB, too large for pickle BINBYTES"
            )));
        }
        self.global("numpy.core.multiarray", "_reconstruct");
        self.global("numpy", "ndarray");
        self.int(0);
        self.out.push(0x85); // TUPLE1
        self.bytes(b"b");
        self.out.extend_from_slice(&[0x87, b'R', b'(']); // TUPLE3, REDUCE, MARK
        self.int(1);
        self.out.push(b'(');
        for &d in &tensor.size() {
            let d = i32::try_from(d)
                .map_err(|_| ModelError::Config(format!("`{name}` has a dimension over 2³¹")))?;
            self.int(d);
        }
        self.out.push(b't');
        self.dtype(code);
        self.bool(false);
        self.bytes(&data);
        self.out.extend_from_slice(b"tb"); // TUPLE, BUILD
        Ok(())
    }

    fn finish(mut self) -> Vec<u8> {
        self.out.push(b'.'); // STOP
        self.out
    }
}
