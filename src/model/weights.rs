//! Checkpoint names and validation. Weights arrive under the official ddim names, the
//! `module.` prefix of training checkpoints, or diffusers' UNet2DModel names; all become the
//! official names, and every key and shape is checked against the plan before any compute.

use super::plan::Plan;
use crate::error::{Error, Result};
use crate::safetensors::TensorFile;
use crate::tensor::Tensor;
use std::collections::BTreeMap;

/// The parameters in plan order.
#[derive(Clone, Debug)]
pub struct Weights {
    pub tensors: Vec<Tensor>,
}

/// Is this a diffusers UNet2DModel state dict?
pub fn is_diffusers(names: &[&str]) -> bool {
    names.iter().any(|n| {
        n.starts_with("down_blocks.")
            || n.starts_with("mid_block.")
            || n.starts_with("time_embedding.")
            || n.starts_with("conv_norm_out.")
    })
}

fn resnet_part(p: &str) -> &str {
    match p {
        "time_emb_proj" => "temb_proj",
        "conv_shortcut" => "nin_shortcut",
        other => other,
    }
}

fn attn_part(rest: &[&str]) -> Option<String> {
    let (layer, tail) = match rest {
        ["to_out", "0", tail @ ..] => ("proj_out", tail),
        [layer, tail @ ..] => (
            match *layer {
                "group_norm" => "norm",
                "query" | "to_q" => "q",
                "key" | "to_k" => "k",
                "value" | "to_v" => "v",
                "proj_attn" => "proj_out",
                _ => return None,
            },
            tail,
        ),
        _ => return None,
    };
    Some(
        std::iter::once(layer)
            .chain(tail.iter().copied())
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// Map one diffusers name to the official name; `levels` is len(ch_mult).
pub fn official_from_diffusers(name: &str, levels: usize) -> Option<String> {
    let p: Vec<&str> = name.split('.').collect();
    let up = |k: &str| {
        k.parse::<usize>()
            .ok()
            .filter(|&k| k < levels)
            .map(|k| levels - 1 - k)
    };
    Some(match p[..] {
        ["time_embedding", "linear_1", x] => format!("temb.dense.0.{x}"),
        ["time_embedding", "linear_2", x] => format!("temb.dense.1.{x}"),
        ["conv_norm_out", x] => format!("norm_out.{x}"),
        ["conv_in", x] | ["conv_out", x] => format!("{}.{x}", p[0]),
        ["down_blocks", i, "resnets", j, l, x] => {
            format!("down.{i}.block.{j}.{}.{x}", resnet_part(l))
        }
        ["down_blocks", i, "attentions", j, ref rest @ ..] => {
            format!("down.{i}.attn.{j}.{}", attn_part(rest)?)
        }
        ["down_blocks", i, "downsamplers", "0", "conv", x] => {
            format!("down.{i}.downsample.conv.{x}")
        }
        ["mid_block", "resnets", j @ ("0" | "1"), l, x] => {
            format!(
                "mid.block_{}.{}.{x}",
                if j == "0" { 1 } else { 2 },
                resnet_part(l)
            )
        }
        ["mid_block", "attentions", "0", ref rest @ ..] => {
            format!("mid.attn_1.{}", attn_part(rest)?)
        }
        ["up_blocks", k, "resnets", j, l, x] => {
            format!("up.{}.block.{j}.{}.{x}", up(k)?, resnet_part(l))
        }
        ["up_blocks", k, "attentions", j, ref rest @ ..] => {
            format!("up.{}.attn.{j}.{}", up(k)?, attn_part(rest)?)
        }
        ["up_blocks", k, "upsamplers", "0", "conv", x] => {
            format!("up.{}.upsample.conv.{x}", up(k)?)
        }
        _ => return None,
    })
}

fn list(title: &str, items: &[String], out: &mut String) {
    if items.is_empty() {
        return;
    }
    out.push_str(&format!("  {title} ({}):\n", items.len()));
    for it in items.iter().take(20) {
        out.push_str(&format!("    {it}\n"));
    }
    if items.len() > 20 {
        out.push_str(&format!("    … and {} more\n", items.len() - 20));
    }
}

/// Normalise names and check every key and shape against the plan.
pub fn load(plan: &Plan, file: TensorFile) -> Result<Weights> {
    let levels = plan.config.ch_mult.len();
    let names: Vec<&str> = file.tensors.iter().map(|(n, _)| n.as_str()).collect();
    let diffusers = is_diffusers(&names);
    let mut by_name: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut unexpected = Vec::new();
    for (raw, t) in file.tensors {
        let name = raw.strip_prefix("module.").unwrap_or(&raw);
        let mapped = if diffusers {
            official_from_diffusers(name, levels)
        } else {
            Some(name.replace(".downsample.op.", ".downsample.conv."))
        };
        match mapped {
            Some(m) if !by_name.contains_key(&m) => {
                by_name.insert(m, t);
            }
            _ => unexpected.push(format!("{raw} {:?}", t.shape)),
        }
    }
    let (mut missing, mut wrong) = (Vec::new(), Vec::new());
    let mut tensors = Vec::with_capacity(plan.params.len());
    for p in &plan.params {
        match by_name.remove(&p.name) {
            None => missing.push(format!("{} {:?}", p.name, p.shape)),
            Some(mut t) => {
                // diffusers stores the attention 1×1 convs as Linear [C, C].
                let squeezed =
                    p.shape.len() == 4 && p.shape[2..] == [1, 1] && t.shape == p.shape[..2];
                if squeezed {
                    t.shape = p.shape.clone();
                }
                if t.shape != p.shape {
                    wrong.push(format!(
                        "{}: expected {:?}, found {:?}",
                        p.name, p.shape, t.shape
                    ));
                } else if let Some(i) = t.data.iter().position(|x| !x.is_finite()) {
                    wrong.push(format!("{}: element {i} is {}", p.name, t.data[i]));
                }
                tensors.push(t);
            }
        }
    }
    unexpected.extend(
        by_name
            .into_iter()
            .map(|(n, t)| format!("{n} {:?}", t.shape)),
    );
    if missing.is_empty() && unexpected.is_empty() && wrong.is_empty() {
        return Ok(Weights { tensors });
    }
    let mut msg = String::new();
    list("missing keys", &missing, &mut msg);
    list("unexpected keys", &unexpected, &mut msg);
    list("wrong shapes or values", &wrong, &mut msg);
    Err(Error::Weights(msg.trim_end().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_diffusers_names() {
        let m = |n| official_from_diffusers(n, 4).unwrap();
        assert_eq!(
            m("up_blocks.0.resnets.2.time_emb_proj.weight"),
            "up.3.block.2.temb_proj.weight"
        );
        assert_eq!(
            m("up_blocks.2.attentions.1.to_out.0.bias"),
            "up.1.attn.1.proj_out.bias"
        );
        assert_eq!(
            m("down_blocks.1.attentions.0.query.weight"),
            "down.1.attn.0.q.weight"
        );
        assert_eq!(
            m("mid_block.resnets.1.conv_shortcut.bias"),
            "mid.block_2.nin_shortcut.bias"
        );
        assert_eq!(
            m("up_blocks.1.upsamplers.0.conv.weight"),
            "up.2.upsample.conv.weight"
        );
        assert_eq!(m("time_embedding.linear_2.bias"), "temb.dense.1.bias");
        assert!(official_from_diffusers("up_blocks.9.resnets.0.conv1.weight", 4).is_none());
    }
}
