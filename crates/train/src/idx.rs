//! IDX files (the MNIST format), gzip-compressed or not: magic number, dimensions and length
//! are all checked, and errors name the file and what was expected.

use crate::data::Dataset;
use crate::error::DataError;
use ndarray::{Array1, Array2};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;

/// A decoded IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx {
    /// The dimensions from the header.
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

/// The bytes of `path`, decompressed if they start with the gzip magic bytes.
fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let io = |source| DataError::Io { path: path.to_path_buf(), source };
    let raw = std::fs::read(path).map_err(io)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(|e| DataError::IdxLength {
            path: path.to_path_buf(),
            reason: format!("gzip stream is damaged or truncated: {e}"),
        })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Reads an IDX file of unsigned bytes whose magic number must be `magic`.
pub fn read_idx(path: &Path, magic: u32) -> Result<Idx, DataError> {
    let bytes = read_maybe_gzip(path)?;
    let what = |m: u32| match m {
        LABELS_MAGIC => "unsigned bytes, 1 dimension: labels",
        IMAGES_MAGIC => "unsigned bytes, 3 dimensions: images",
        _ => "IDX unsigned bytes",
    };
    let word = |i: usize| -> Option<u32> {
        bytes.get(4 * i..4 * i + 4).map(|b| u32::from_be_bytes(b.try_into().expect("four bytes")))
    };
    let found = word(0).ok_or_else(|| DataError::IdxLength {
        path: path.to_path_buf(),
        reason: format!("{} bytes, shorter than the 4-byte magic number", bytes.len()),
    })?;
    if found != magic {
        return Err(DataError::IdxMagic { path: path.to_path_buf(), expected: magic, found, what: what(magic) });
    }
    let ndim = (magic & 0xff) as usize;
    let header = 4 * (1 + ndim);
    let dims: Vec<usize> =
        (1..=ndim).map(|i| word(i).map(|d| d as usize)).collect::<Option<_>>().ok_or_else(|| DataError::IdxLength {
            path: path.to_path_buf(),
            reason: format!("{} bytes, shorter than the {header}-byte header", bytes.len()),
        })?;
    let expected = header + dims.iter().product::<usize>();
    if bytes.len() != expected {
        return Err(DataError::IdxLength {
            path: path.to_path_buf(),
            reason: format!(
                "{} bytes, expected {expected} ({header}-byte header + {dims:?} values){}",
                bytes.len(),
                if bytes.len() < expected { ": the file is truncated" } else { ": trailing bytes" }
            ),
        });
    }
    Ok(Idx { dims, data: bytes[header..].to_vec() })
}

/// Images [n, rows * cols] scaled to [0, 1], from an IDX images file.
pub fn read_images(path: &Path) -> Result<(Array2<f64>, (usize, usize)), DataError> {
    let idx = read_idx(path, IMAGES_MAGIC)?;
    let &[n, h, w] = idx.dims.as_slice() else {
        return Err(DataError::IdxDims { path: path.to_path_buf(), found: idx.dims, expected: "3 dimensions".into() });
    };
    let x = Array2::from_shape_vec((n, h * w), idx.data.iter().map(|&p| f64::from(p) / 255.0).collect())
        .map_err(|e| DataError::IdxLength { path: path.to_path_buf(), reason: e.to_string() })?;
    Ok((x, (h, w)))
}

/// Labels from an IDX labels file.
pub fn read_labels(path: &Path) -> Result<Array1<f64>, DataError> {
    let idx = read_idx(path, LABELS_MAGIC)?;
    Ok(idx.data.iter().map(|&l| f64::from(l)).collect())
}

/// MNIST's training and test sets.
#[derive(Debug, Clone)]
pub struct Mnist {
    /// 60,000 training images (flattened 28x28, in [0, 1]) and labels 0..9.
    pub train: Dataset,
    /// 10,000 test images and labels.
    pub test: Dataset,
}

/// The four standard file names.
pub const MNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

fn pair(images: PathBuf, labels: PathBuf, count: usize) -> Result<Dataset, DataError> {
    let (features, (h, w)) = read_images(&images)?;
    if (h, w) != (28, 28) || features.nrows() != count {
        return Err(DataError::IdxDims {
            path: images,
            found: vec![features.nrows(), h, w],
            expected: format!("[{count}, 28, 28]"),
        });
    }
    let labels = read_labels(&labels)?;
    if labels.len() != count {
        return Err(DataError::Mismatch {
            reason: format!("{} labels for {count} images ({})", labels.len(), images.display()),
        });
    }
    let names = (0..h * w).map(|i| format!("pixel{i}")).collect();
    Ok(Dataset { features, labels, feature_names: names })
}

impl Mnist {
    /// Loads the four gzip IDX files from `dir` (60,000 training and 10,000 test images).
    pub fn load(dir: &Path) -> Result<Mnist, DataError> {
        let f = |i: usize| dir.join(MNIST_FILES[i]);
        Ok(Mnist { train: pair(f(0), f(1), 60_000)?, test: Self::load_test(dir)? })
    }

    /// Loads only the 10,000 test images and labels from `dir` (inference needs nothing else;
    /// the training images as f64 would be 376 MB more).
    pub fn load_test(dir: &Path) -> Result<Dataset, DataError> {
        pair(dir.join(MNIST_FILES[2]), dir.join(MNIST_FILES[3]), 10_000)
    }
}

/// The repository's `data/` directory, found from a crate's `CARGO_MANIFEST_DIR` (pass
/// `env!("CARGO_MANIFEST_DIR")`): the nearest ancestor with a `data` directory.
pub fn repo_data_dir(manifest_dir: &str) -> Option<PathBuf> {
    Path::new(manifest_dir).ancestors().map(|p| p.join("data")).find(|p| p.is_dir())
}
