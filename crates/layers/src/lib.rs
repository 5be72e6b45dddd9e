//! pond-layers: (skeleton)
