//! Model files: the architecture as JSON ([`ModelSpec`]) next to the weights as safetensors.
//!
//! Weights are written as F64 (little-endian, exact); F32 files (as PyTorch and Keras export them)
//! load too. Every error names the file and, where there is one, the tensor.

use crate::model::{ModelSpec, Weights};
use ndarray::ArrayD;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::path::{Path, PathBuf};
use thiserror::Error;

fn in_file(file: &Option<PathBuf>) -> String {
    file.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default()
}

/// What can go wrong reading or writing a model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid architecture description or safetensors file.
    #[error("{}: {reason}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The architecture needs a tensor the weights do not have.
    #[error("tensor `{name}` is missing{}", in_file(file))]
    MissingTensor {
        /// The tensor's name.
        name: String,
        /// The weights file, if the weights came from one.
        file: Option<PathBuf>,
    },
    /// The weights hold a tensor the architecture does not have.
    #[error("tensor `{name}`{} is not a parameter of the architecture", in_file(file))]
    UnexpectedTensor {
        /// The tensor's name.
        name: String,
        /// The weights file, if any.
        file: Option<PathBuf>,
    },
    /// A tensor has the wrong shape for the architecture.
    #[error("tensor `{name}`{} has shape {got:?}, the architecture needs {expected:?}", in_file(file))]
    WrongShape {
        /// The tensor's name.
        name: String,
        /// The shape the architecture needs.
        expected: Vec<usize>,
        /// The shape found.
        got: Vec<usize>,
        /// The weights file, if any.
        file: Option<PathBuf>,
    },
    /// A tensor has an element type pond cannot read.
    #[error("tensor `{name}` in {} has dtype {dtype}; pond reads F64 and F32", file.display())]
    UnsupportedDtype {
        /// The tensor's name.
        name: String,
        /// The dtype found.
        dtype: String,
        /// The weights file.
        file: PathBuf,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io { path: path.to_path_buf(), source }
}

/// Writes the architecture to `json` and the weights (checked against it first) to `tensors`.
pub fn save(spec: &ModelSpec, weights: &Weights, json: &Path, tensors: &Path) -> Result<(), ModelError> {
    spec.check_weights(weights).map_err(|e| with_file(e, tensors))?;
    let text = serde_json::to_string_pretty(spec)
        .map_err(|e| ModelError::BadFile { path: json.to_path_buf(), reason: e.to_string() })?;
    std::fs::write(json, text).map_err(io_error(json))?;
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = weights
        .iter()
        .map(|(name, w)| (name.clone(), w.iter().flat_map(|v| v.to_le_bytes()).collect(), w.shape().to_vec()))
        .collect();
    let views = bytes
        .iter()
        .map(|(name, data, shape)| Ok((name.as_str(), TensorView::new(Dtype::F64, shape.clone(), data)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| ModelError::BadFile { path: tensors.to_path_buf(), reason: e.to_string() })?;
    let out = safetensors::serialize(views, None)
        .map_err(|e| ModelError::BadFile { path: tensors.to_path_buf(), reason: e.to_string() })?;
    std::fs::write(tensors, out).map_err(io_error(tensors))
}

fn with_file(e: ModelError, file: &Path) -> ModelError {
    let f = Some(file.to_path_buf());
    match e {
        ModelError::MissingTensor { name, .. } => ModelError::MissingTensor { name, file: f },
        ModelError::UnexpectedTensor { name, .. } => ModelError::UnexpectedTensor { name, file: f },
        ModelError::WrongShape { name, expected, got, .. } => ModelError::WrongShape { name, expected, got, file: f },
        other => other,
    }
}

/// Reads an architecture description.
pub fn load_spec(json: &Path) -> Result<ModelSpec, ModelError> {
    let text = std::fs::read_to_string(json).map_err(io_error(json))?;
    serde_json::from_str(&text).map_err(|e| ModelError::BadFile { path: json.to_path_buf(), reason: e.to_string() })
}

/// Reads every tensor of a safetensors file as f64.
pub fn load_weights(tensors: &Path) -> Result<Weights, ModelError> {
    let bytes = std::fs::read(tensors).map_err(io_error(tensors))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| ModelError::BadFile { path: tensors.to_path_buf(), reason: e.to_string() })?;
    let mut out = Weights::new();
    for name in st.names() {
        let view =
            st.tensor(name).map_err(|e| ModelError::BadFile { path: tensors.to_path_buf(), reason: e.to_string() })?;
        let values: Vec<f64> = match view.dtype() {
            Dtype::F64 => {
                view.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("chunks of 8"))).collect()
            }
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("chunks of 4")) as f64)
                .collect(),
            other => {
                return Err(ModelError::UnsupportedDtype {
                    name: name.to_string(),
                    dtype: format!("{other:?}"),
                    file: tensors.to_path_buf(),
                })
            }
        };
        let array = ArrayD::from_shape_vec(view.shape().to_vec(), values).map_err(|e| ModelError::BadFile {
            path: tensors.to_path_buf(),
            reason: format!("tensor `{name}`: {e}"),
        })?;
        out.insert(name.to_string(), array);
    }
    Ok(out)
}

/// Reads an architecture and its weights, and checks that they fit each other.
pub fn load(json: &Path, tensors: &Path) -> Result<(ModelSpec, Weights), ModelError> {
    let spec = load_spec(json)?;
    let weights = load_weights(tensors)?;
    spec.check_weights(&weights).map_err(|e| with_file(e, tensors))?;
    Ok((spec, weights))
}
