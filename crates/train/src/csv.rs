//! A CSV loader for numeric tables: header or not, label column by name or index.

use crate::data::Dataset;
use crate::error::DataError;
use ndarray::{Array1, Array2};
use std::path::Path;

/// Which column holds the label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelColumn {
    /// By header name (needs a header row).
    Name(String),
    /// By 0-based index; negative counts from the end (-1 = last column).
    Index(isize),
}

impl LabelColumn {
    /// A column given on the command line: a number is an index, anything else a name.
    pub fn parse(s: &str) -> LabelColumn {
        s.parse::<isize>().map(LabelColumn::Index).unwrap_or_else(|_| LabelColumn::Name(s.to_string()))
    }
}

/// How to read a CSV file.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// Whether the first row holds column names.
    pub header: bool,
    /// The label column; every other column is a feature.
    pub label: LabelColumn,
}

/// Reads a numeric CSV file (comma separated, every field a number) into features and labels.
/// Errors name the file, the line and the field.
pub fn load_csv(path: &Path, options: &CsvOptions) -> Result<Dataset, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let csv_err = |line: usize, reason: String| DataError::Csv { path: path.to_path_buf(), line: line + 1, reason };
    let names: Option<Vec<String>> = if options.header {
        let (_, h) = lines.next().ok_or_else(|| csv_err(0, "empty file, expected a header row".into()))?;
        Some(h.split(',').map(|c| c.trim().trim_matches('"').to_string()).collect())
    } else {
        None
    };
    let mut rows: Vec<(usize, Vec<f64>)> = Vec::new();
    for (i, line) in lines {
        let values = line
            .split(',')
            .enumerate()
            .map(|(j, f)| {
                f.trim()
                    .parse::<f64>()
                    .map_err(|_| csv_err(i, format!("field {} is `{}`, not a number", j + 1, f.trim())))
            })
            .collect::<Result<Vec<f64>, _>>()?;
        rows.push((i, values));
    }
    let width = names.as_ref().map(|n| n.len()).or_else(|| rows.first().map(|r| r.1.len())).unwrap_or(0);
    if let Some((i, r)) = rows.iter().find(|(_, r)| r.len() != width) {
        return Err(csv_err(*i, format!("{} fields, expected {width}", r.len())));
    }
    if rows.is_empty() || width < 2 {
        return Err(csv_err(0, "no data rows with at least one feature and a label".into()));
    }
    let label = match &options.label {
        LabelColumn::Name(name) => {
            let names =
                names.as_ref().ok_or_else(|| csv_err(0, format!("label `{name}` given by name, but no header")))?;
            names.iter().position(|n| n == name).ok_or_else(|| DataError::MissingColumn {
                path: path.to_path_buf(),
                column: name.clone(),
                available: names.clone(),
            })?
        }
        LabelColumn::Index(i) => {
            let idx = if *i < 0 { width as isize + i } else { *i };
            if idx < 0 || idx >= width as isize {
                return Err(csv_err(0, format!("label column {i} outside the {width} columns")));
            }
            idx as usize
        }
    };
    let n = rows.len();
    let mut features = Array2::<f64>::zeros((n, width - 1));
    let mut labels = Array1::<f64>::zeros(n);
    for (r, (_, values)) in rows.iter().enumerate() {
        let mut c = 0;
        for (j, v) in values.iter().enumerate() {
            if j == label {
                labels[r] = *v;
            } else {
                features[[r, c]] = *v;
                c += 1;
            }
        }
    }
    let feature_names = match names {
        Some(names) => names.into_iter().enumerate().filter(|(j, _)| *j != label).map(|(_, n)| n).collect(),
        None => (0..width).filter(|&j| j != label).map(|j| format!("column {j}")).collect(),
    };
    Ok(Dataset { features, labels, feature_names })
}
