//! Presets (one per paper row, `configs/<dataset>/<row>.toml`, embedded in
//! the binary at build time) and `--set KEY=VALUE` words, resolved into a
//! configuration by ssl-train.

use anyhow::{bail, Context, Result};
use ssl_train::{Config, Override, Preset};

include!(concat!(env!("OUT_DIR"), "/presets.rs"));

/// Every preset name (`dataset/row`), sorted.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|(name, _)| *name).collect()
}

/// A preset by file path (a TOML file that exists) or by name.
pub fn load(preset: &str) -> Result<Preset> {
    let path = std::path::Path::new(preset);
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading preset {}", path.display()))?;
        return Ok(Preset::new(text, path.display().to_string()));
    }
    if let Some((name, text)) = PRESETS.iter().find(|(name, _)| *name == preset) {
        return Ok(Preset::new(*text, format!("preset {name}")));
    }
    let close: Vec<&str> = preset_names()
        .into_iter()
        .filter(|n| n.contains(preset) || preset.contains(n))
        .take(5)
        .collect();
    bail!(
        "no preset `{preset}` (neither a file nor a preset name){}; `ssl config list` shows all",
        if close.is_empty() {
            String::new()
        } else {
            format!(": did you mean {close:?}?")
        }
    )
}

/// `KEY=VALUE` words (`--set`) as overrides.
pub fn overrides(items: &[String]) -> Result<Vec<Override>> {
    items
        .iter()
        .map(|item| {
            let (key, value) = item
                .split_once('=')
                .with_context(|| format!("--set {item}: expected key=value, e.g. optim.lr=1e-3"))?;
            Ok(Override::new(key, value))
        })
        .collect()
}

/// The configuration of a preset (name or file; `None`: the defaults) and
/// `--set` words.
pub fn resolve(preset: Option<&str>, set: &[String]) -> Result<Config> {
    let preset = preset.map(load).transpose()?;
    Ok(Config::resolve(preset.as_ref(), &overrides(set)?)?)
}
