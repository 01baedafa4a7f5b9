//! The exponential-moving-average target network of BYOL
//! (`docs/reference.md` §3.4, §4.3).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::nn::{self, VarStore};
use tch::Tensor;

use crate::tensor_file::{mismatches, sorted_variables};
use crate::ModelError;

/// What the target does with buffers (BatchNorm running statistics and
/// `num_batches_tracked`) on [`EmaTarget::update`]. Integer buffers are always
/// copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BufferUpdate {
    /// Copy the online network's floating-point buffers.
    Copy,
    /// Average them like the parameters.
    Ema,
}

/// A frozen copy `ξ` of an online network `θ`, updated as
/// `ξ ← τ·ξ + (1 − τ)·θ` for every parameter, buffers per [`BufferUpdate`].
///
/// The target owns its own VarStore, built by the same function as the
/// online network, so its variables have the same names; a parameter is a
/// variable that requires gradients in the online store.
#[derive(Debug)]
pub struct EmaTarget {
    vs: VarStore,
    buffers: BufferUpdate,
}

impl EmaTarget {
    /// Builds the target with `build` (the online network's constructor, or
    /// the part of it the target mirrors: BYOL's target has no predictor) on
    /// `online`'s device, checks that each of its variables exists in
    /// `online` with the same shape and dtype (every mismatch reported),
    /// copies them, and freezes the target. Returns the target and the module `build` gave.
    pub fn new<M>(
        online: &VarStore,
        buffers: BufferUpdate,
        build: impl FnOnce(&nn::Path<'_>) -> Result<M, ModelError>,
    ) -> Result<(EmaTarget, M), ModelError> {
        let mut vs = VarStore::new(online.device());
        let module = build(&vs.root())?;
        let target_vars = sorted_variables(&vs);
        // The online store may hold more (a predictor the target lacks).
        let online_vars: BTreeMap<String, Tensor> = sorted_variables(online)
            .into_iter()
            .filter(|(name, _)| target_vars.contains_key(name))
            .collect();
        let found = mismatches(&target_vars, &online_vars);
        if !found.is_empty() {
            return Err(ModelError::Mismatch {
                path: "<online network>".into(),
                mismatches: found,
            });
        }
        crate::tensor_file::copy_into("<online network>".as_ref(), &target_vars, &online_vars)?;
        vs.freeze();
        Ok((EmaTarget { vs, buffers }, module))
    }

    /// The target's variables (for checkpoints and evaluation).
    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }

    /// Mutable access, e.g. to move the target with `set_device`.
    pub fn var_store_mut(&mut self) -> &mut VarStore {
        &mut self.vs
    }

    /// `ξ ← τ·ξ + (1 − τ)·θ` for every parameter (computed as in the
    /// reference, `ξ·τ + θ·(1 − τ)`); buffers averaged or copied per
    /// [`BufferUpdate`]. Fails, naming the variable, when the online network
    /// lacks one of the target's variables.
    pub fn update(&mut self, online: &VarStore, tau: f64) -> Result<(), ModelError> {
        if !(0.0..=1.0).contains(&tau) {
            return Err(ModelError::Config(format!(
                "EMA momentum τ must lie in [0, 1], got {tau}"
            )));
        }
        let online_vars = online.variables();
        tch::no_grad(|| {
            for (name, mut target) in sorted_variables(&self.vs) {
                let source = online_vars.get(&name).ok_or_else(|| ModelError::Mismatch {
                    path: "<online network>".into(),
                    mismatches: vec![format!("missing `{name}`")],
                })?;
                let average = source.requires_grad()
                    || (self.buffers == BufferUpdate::Ema && source.is_floating_point());
                let copied = if average {
                    let value = &target * tau + source * (1.0 - tau);
                    target.f_copy_(&value)
                } else {
                    target.f_copy_(source)
                };
                copied.map_err(ModelError::tch(format!("updating EMA target `{name}`")))?;
            }
            Ok(())
        })
    }
}
