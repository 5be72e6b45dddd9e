//! pond-net: (skeleton)
