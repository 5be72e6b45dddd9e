//! pond-protocol: (skeleton)
