//! pond-train: (skeleton)
