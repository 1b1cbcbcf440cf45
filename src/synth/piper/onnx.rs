//! Reading a Piper voice's weights straight from its ONNX file.
//!
//! We do not evaluate the graph. We decode just enough of the ONNX protobuf
//! (`onnx.proto3`: ModelProto -> GraphProto -> TensorProto / NodeProto) to
//!
//! * take every initializer as a candle tensor, and
//! * give each weight its PyTorch module name, resolved through the node that
//!   consumes it. The exporter leaves some weights anonymous (the flow's
//!   WaveNet convolutions are `onnx::Conv_8168`...) or misnamed (the phoneme
//!   embedding of `en_US-joe-medium` is stored as `sid`); the consuming node's
//!   name (`/flow/flows.0/enc/in_layers.0/Conv`) always carries the module path.
//! * keep each convolution's hyper-parameters (pads, strides, dilations, groups)
//!   from the node attributes, so voices of every quality level load without a
//!   table of presets.
//!
//! The message structs are written by hand with `prost`'s derive (field tags
//! from onnx.proto3), so no `protoc` is needed at build time.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use prost::Message;

use super::PiperError;

// --- the subset of onnx.proto3 we read ------------------------------------

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(string, tag = "2")]
    producer_name: String,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    op_type: String,
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct AttributeProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(float, tag = "2")]
    f: f32,
    #[prost(int64, tag = "3")]
    i: i64,
    #[prost(message, optional, tag = "5")]
    t: Option<TensorProto>,
    #[prost(int64, repeated, tag = "8")]
    ints: Vec<i64>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(float, repeated, tag = "4")]
    float_data: Vec<f32>,
    #[prost(int32, repeated, tag = "5")]
    int32_data: Vec<i32>,
    #[prost(int64, repeated, tag = "7")]
    int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    name: String,
    #[prost(bytes = "vec", tag = "9")]
    raw_data: Vec<u8>,
    #[prost(double, repeated, tag = "10")]
    double_data: Vec<f64>,
    #[prost(int32, tag = "14")]
    data_location: i32,
}

// TensorProto.DataType values.
const ONNX_FLOAT: i32 = 1;
const ONNX_INT32: i32 = 6;
const ONNX_INT64: i32 = 7;
const ONNX_FLOAT16: i32 = 10;
const ONNX_DOUBLE: i32 = 11;

/// A convolution's hyper-parameters as the graph states them.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvAttrs {
    /// `[begin, end]` padding of the single spatial axis.
    pub pads: [usize; 2],
    pub stride: usize,
    pub dilation: usize,
    pub groups: usize,
    pub transpose: bool,
}

/// Every weight of a voice, by module name, plus each convolution's attributes.
pub struct OnnxWeights {
    tensors: HashMap<String, Tensor>,
    convs: HashMap<String, ConvAttrs>,
    /// Graph input names (`input`, `input_lengths`, `scales`, `sid`...).
    pub inputs: Vec<String>,
}

impl OnnxWeights {
    /// Reads and resolves the weights of the ONNX file at `path`.
    pub fn read(path: &Path) -> Result<Self, PiperError> {
        let bytes = std::fs::read(path).map_err(|source| PiperError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            PiperError::BadModel { reason, .. } => PiperError::BadModel {
                path: path.to_path_buf(),
                reason,
            },
            other => other,
        })
    }

    /// Decodes an ONNX model held in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PiperError> {
        let bad = |reason: String| PiperError::BadModel {
            path: Default::default(),
            reason,
        };
        let model = ModelProto::decode(bytes)
            .map_err(|e| bad(format!("not a valid ONNX protobuf ({e}); is the file truncated?")))?;
        let graph = model
            .graph
            .ok_or_else(|| bad("the ONNX file has no graph".into()))?;
        if graph.initializer.is_empty() {
            return Err(bad("the ONNX graph has no weights (initializers)".into()));
        }

        let mut tensors = HashMap::new();
        for init in &graph.initializer {
            let t = to_tensor(init).map_err(|r| bad(format!("initializer `{}`: {r}", init.name)))?;
            tensors.insert(init.name.clone(), t);
        }
        // Constant nodes hold folded values too (e.g. exp(-logs) of an affine flow).
        for node in graph.node.iter().filter(|n| n.op_type == "Constant") {
            if let (Some(out), Some(t)) = (
                node.output.first(),
                node.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.as_ref()),
            ) {
                if let Ok(t) = to_tensor(t) {
                    tensors.insert(out.clone(), t);
                }
            }
        }

        // Give weights their module names through the nodes that consume them.
        let mut aliases: Vec<(String, String)> = Vec::new();
        let mut convs = HashMap::new();
        for node in &graph.node {
            let Some(module) = module_path(&node.name) else { continue };
            match node.op_type.as_str() {
                "Conv" | "ConvTranspose" => {
                    if let Some(w) = node.input.get(1) {
                        aliases.push((format!("{module}.weight"), w.clone()));
                    }
                    if let Some(b) = node.input.get(2).filter(|b| !b.is_empty()) {
                        aliases.push((format!("{module}.bias"), b.clone()));
                    }
                    convs.insert(module, conv_attrs(node));
                }
                "Gather" if node.name.ends_with("/emb/Gather") || node.name.ends_with("emb_g/Gather") => {
                    if let Some(w) = node.input.first() {
                        aliases.push((format!("{module}.weight"), w.clone()));
                    }
                }
                _ => {}
            }
        }
        for (name, source) in aliases {
            if let Some(t) = tensors.get(&source).cloned() {
                tensors.entry(name).or_insert(t);
            }
        }
        // The affine flow of the duration predictor: the exporter folds
        // exp(-logs) into a constant multiplied in `/dp/flows.0/Mul`.
        if !tensors.contains_key("dp.flows.0.exp_neg_logs") {
            if let Some(t) = tensors.get("dp.flows.0.logs").cloned() {
                let t = t.neg().and_then(|t| t.exp()).map_err(|e| bad(e.to_string()))?;
                tensors.insert("dp.flows.0.exp_neg_logs".into(), t);
            } else if let Some(t) = folded_affine_scale(&graph, &tensors) {
                let t = t.map_err(|e| bad(e.to_string()))?;
                tensors.insert("dp.flows.0.exp_neg_logs".into(), t);
            }
        }

        let inputs = graph.input.iter().map(|i| i.name.clone()).collect();
        Ok(Self { tensors, convs, inputs })
    }

    /// The tensor named `name`, converted to f32 on `device`.
    pub fn get(&self, name: &str, device: &Device) -> Result<Tensor, PiperError> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| PiperError::MissingWeight(name.to_string()))?;
        Ok(t.to_dtype(DType::F32)?.to_device(device)?)
    }

    /// Whether a weight named `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The attributes of the convolution module `module` (e.g. `dec.ups.0`).
    pub fn conv(&self, module: &str) -> Result<ConvAttrs, PiperError> {
        self.convs
            .get(module)
            .cloned()
            .ok_or_else(|| PiperError::MissingWeight(format!("{module} (convolution node)")))
    }

    /// Number of scalar parameters (for logs and tests).
    pub fn parameter_count(&self) -> usize {
        self.tensors
            .iter()
            .filter(|(k, _)| !k.starts_with('/') && !k.starts_with("onnx::"))
            .map(|(_, t)| t.elem_count())
            .sum()
    }
}

/// The multiplier `exp(-logs)` of the duration predictor's affine flow,
/// `/dp/flows.0/Mul(Sub(x, m), scale)`: either a folded constant, or `Exp` of
/// a folded `-logs`.
fn folded_affine_scale(graph: &GraphProto, tensors: &HashMap<String, Tensor>) -> Option<candle_core::Result<Tensor>> {
    let mul = graph.node.iter().find(|n| n.op_type == "Mul" && n.name == "/dp/flows.0/Mul")?;
    let scale = mul.input.iter().find(|i| !i.ends_with("/Sub_output_0"))?;
    if let Some(t) = tensors.get(scale) {
        return Some(Ok(t.clone()));
    }
    let producer = graph.node.iter().find(|n| n.output.iter().any(|o| o == scale))?;
    if producer.op_type == "Exp" {
        let t = tensors.get(producer.input.first()?)?;
        return Some(t.exp());
    }
    None
}

/// `/flow/flows.0/enc/in_layers.0/Conv` -> `flow.flows.0.enc.in_layers.0`.
fn module_path(node_name: &str) -> Option<String> {
    let trimmed = node_name.strip_prefix('/')?;
    let (module, _op) = trimmed.rsplit_once('/')?;
    if module.is_empty() {
        return None;
    }
    Some(module.replace('/', "."))
}

fn conv_attrs(node: &NodeProto) -> ConvAttrs {
    let ints = |name: &str| {
        node.attribute
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.ints.clone())
            .unwrap_or_default()
    };
    let int = |name: &str| node.attribute.iter().find(|a| a.name == name).map(|a| a.i);
    let pads = ints("pads");
    let first = |v: Vec<i64>| v.first().copied().unwrap_or(1).max(1) as usize;
    ConvAttrs {
        pads: [
            pads.first().copied().unwrap_or(0).max(0) as usize,
            pads.get(1).copied().unwrap_or(0).max(0) as usize,
        ],
        stride: first(ints("strides")),
        dilation: first(ints("dilations")),
        groups: int("group").unwrap_or(1).max(1) as usize,
        transpose: node.op_type == "ConvTranspose",
    }
}

fn to_tensor(t: &TensorProto) -> Result<Tensor, String> {
    if t.data_location == 1 {
        return Err("weights stored in an external file are not supported".into());
    }
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<Result<_, _>>()?;
    let count: usize = dims.iter().product();
    let raw = &t.raw_data;
    let check = |n: usize| {
        if n == count {
            Ok(())
        } else {
            Err(format!("holds {n} values, its shape {dims:?} needs {count}"))
        }
    };
    let cpu = &Device::Cpu;
    let tensor = match t.data_type {
        ONNX_FLOAT => {
            let v: Vec<f32> = if raw.is_empty() {
                t.float_data.clone()
            } else {
                raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
            };
            check(v.len())?;
            Tensor::from_vec(v, dims.as_slice(), cpu)
        }
        ONNX_FLOAT16 => {
            let v: Vec<f32> = if raw.is_empty() {
                t.int32_data.iter().map(|&b| half_to_f32(b as u16)).collect()
            } else {
                raw.chunks_exact(2).map(|c| half_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect()
            };
            check(v.len())?;
            Tensor::from_vec(v, dims.as_slice(), cpu)
        }
        ONNX_DOUBLE => {
            let v: Vec<f32> = if raw.is_empty() {
                t.double_data.iter().map(|&x| x as f32).collect()
            } else {
                raw.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8-byte chunk")) as f32)
                    .collect()
            };
            check(v.len())?;
            Tensor::from_vec(v, dims.as_slice(), cpu)
        }
        ONNX_INT64 => {
            let v: Vec<i64> = if raw.is_empty() {
                t.int64_data.clone()
            } else {
                raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8-byte chunk"))).collect()
            };
            check(v.len())?;
            Tensor::from_vec(v, dims.as_slice(), cpu)
        }
        ONNX_INT32 => {
            let v: Vec<i64> = if raw.is_empty() {
                t.int32_data.iter().map(|&x| x as i64).collect()
            } else {
                raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect()
            };
            check(v.len())?;
            Tensor::from_vec(v, dims.as_slice(), cpu)
        }
        other => return Err(format!("unsupported ONNX data type {other}")),
    };
    tensor.map_err(|e| e.to_string())
}

fn half_to_f32(bits: u16) -> f32 {
    let sign = ((bits >> 15) & 1) as u32;
    let exp = ((bits >> 10) & 0x1f) as u32;
    let frac = (bits & 0x3ff) as u32;
    let f = if exp == 0 {
        // subnormal or zero
        (frac as f32) * 2f32.powi(-24)
    } else if exp == 31 {
        if frac == 0 { f32::INFINITY } else { f32::NAN }
    } else {
        f32::from_bits(((exp + 127 - 15) << 23) | (frac << 13))
    };
    if sign == 1 { -f } else { f }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths_come_from_node_names() {
        assert_eq!(
            module_path("/flow/flows.0/enc/in_layers.0/Conv").as_deref(),
            Some("flow.flows.0.enc.in_layers.0")
        );
        assert_eq!(module_path("/enc_p/emb/Gather").as_deref(), Some("enc_p.emb"));
        assert_eq!(module_path("/Gather"), None);
        assert_eq!(module_path("Conv_12"), None);
    }

    #[test]
    fn garbage_is_a_clear_error_not_a_panic() {
        for bytes in [&b""[..], b"\x08\x07", b"not an onnx file at all \xff\xfe", &[0xffu8; 64]] {
            let err = OnnxWeights::from_bytes(bytes).err().expect("must fail");
            assert!(matches!(err, PiperError::BadModel { .. }), "{err}");
        }
    }

    #[test]
    fn half_floats_decode() {
        assert_eq!(half_to_f32(0x3c00), 1.0);
        assert_eq!(half_to_f32(0xc000), -2.0);
        assert_eq!(half_to_f32(0), 0.0);
    }
}
