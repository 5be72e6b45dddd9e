//! Run-time proofs of CPU features that several kernels share.

/// Proof that the running CPU supports AVX-512 F, BW, VBMI and VBMI2: byte and 16-bit lanes,
/// byte permutes and compression. Exists only after run-time detection, so kernels that take it
/// may use those instructions.
#[derive(Clone, Copy, Debug)]
pub struct Avx512Bytes {
    _detected: (),
}

impl Avx512Bytes {
    /// The token if the CPU has every one of the features.
    pub fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vbmi")
            && is_x86_feature_detected!("avx512vbmi2")
        {
            return Some(Avx512Bytes { _detected: () });
        }
        None
    }
}

/// Proof that the running CPU supports AVX-512 F, BW and VL: 16-bit lanes with their masks,
/// 16-bit permutes and 32-bit compression, at 512 and 256 bits (Skylake-SP and later, Zen 4).
/// Exists only after run-time detection, so kernels that take it may use those instructions;
/// [`Avx512Bytes`] adds the byte permutes and byte/word compression of later CPUs.
#[derive(Clone, Copy, Debug)]
pub struct Avx512Words {
    _detected: (),
}

impl Avx512Words {
    /// The token if the CPU has every one of the features.
    pub fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
        {
            return Some(Avx512Words { _detected: () });
        }
        None
    }
}
