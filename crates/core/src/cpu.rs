//! Run-time proofs of CPU features that several kernels share, and the AVX-512 byte-layout
//! helpers they share.

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

/// Proof that the running CPU supports AVX-512 F and IFMA (52-bit integer multiply-add, Ice
/// Lake and later, Zen 4). Exists only after run-time detection.
#[derive(Clone, Copy, Debug)]
pub struct Avx512Ifma {
    _detected: (),
}

impl Avx512Ifma {
    /// The token if the CPU has both features.
    pub fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512ifma") {
            return Some(Avx512Ifma { _detected: () });
        }
        None
    }
}

/// The AVX-512 tiers a kernel family may use: F, BW and VL, and the byte tier
/// ([`Avx512Bytes`]) where the CPU has it.
#[derive(Clone, Copy, Debug)]
pub struct Avx512Tiers {
    /// The 16-bit tier, always present.
    pub words: Avx512Words,
    /// The byte tier, if the CPU has it.
    pub bytes: Option<Avx512Bytes>,
}

impl Avx512Tiers {
    /// The tiers the CPU has; `None` without AVX-512 F, BW and VL.
    pub fn detect() -> Option<Self> {
        Avx512Words::detect().map(|words| Avx512Tiers { words, bytes: Avx512Bytes::detect() })
    }

    /// The same without the byte tier, so that tests can run the 16-bit kernels on CPUs that
    /// have both.
    pub fn words_only(self) -> Self {
        Avx512Tiers { bytes: None, ..self }
    }
}

/// The running machine as the kernels see it: the CPU model (from `/proc/cpuinfo` where there is
/// one), the threads available, and which vector tiers the kernels detect, e.g.
/// "Intel(R) Xeon(R) Processor @ 2.50GHz, 2 threads; AVX-512 F/BW/VL yes, VBMI/VBMI2 no, IFMA no".
pub fn describe_machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name").and_then(|v| v.split_once(':')).map(|(_, v)| v.trim().to_owned())
            })
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let yes = |present: bool| if present { "yes" } else { "no" };
    format!(
        "{model}, {threads} threads; AVX-512 F/BW/VL {}, VBMI/VBMI2 {}, IFMA {}",
        yes(Avx512Words::detect().is_some()),
        yes(Avx512Bytes::detect().is_some()),
        yes(Avx512Ifma::detect().is_some())
    )
}

/// AVX-512 helpers shared by kernels of several modules and crates.
#[cfg(target_arch = "x86_64")]
pub mod x86 {
    use std::arch::x86_64::*;

    /// Stores the 16-bit lanes of `v` selected by `keep`, in lane order, from `dst` on, and
    /// returns how many it stored, with AVX-512 F's 32-bit compression: each half of `v` is
    /// widened to 32-bit lanes, compressed and narrowed back (for CPUs without VBMI2's 16-bit
    /// compression).
    ///
    /// # Safety
    /// `dst` is valid for writing 32 values: each half's store writes 16 values (those past the
    /// kept ones are scratch), the second from at most 16 on.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub unsafe fn compress_store_u16(keep: __mmask32, v: __m512i, dst: *mut u16) -> usize {
        let mut stored = 0;
        for (half, lanes) in [_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v)].into_iter().enumerate() {
            let keep = (keep >> (16 * half)) as __mmask16;
            let packed = _mm512_cvtepi32_epi16(_mm512_maskz_compress_epi32(keep, _mm512_cvtepu16_epi32(lanes)));
            // SAFETY: the caller's bound: `stored` is at most 16 here, and 16 values follow it.
            unsafe { _mm256_storeu_si256(dst.add(stored).cast(), packed) };
            stored += keep.count_ones() as usize;
        }
        stored
    }

    /// Packs the low three bytes of each 32-bit lane of `v` into its low 48 bytes (the rest is
    /// zero): within each 128-bit lane to its first 12 bytes, then the four runs together.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(crate) fn pack3(v: __m512i) -> __m512i {
        let within = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1));
        let across = _mm512_setr_epi32(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 3, 7, 11, 15);
        _mm512_permutexvar_epi32(across, _mm512_shuffle_epi8(v, within))
    }

    /// The inverse of [`pack3`]: the 16 three-byte values in the low 48 bytes of `v`, each in a
    /// 32-bit lane with its top byte zero.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(crate) fn unpack3(v: __m512i) -> __m512i {
        let across = _mm512_setr_epi32(0, 1, 2, 0, 3, 4, 5, 0, 6, 7, 8, 0, 9, 10, 11, 0);
        let within = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1));
        _mm512_shuffle_epi8(_mm512_permutexvar_epi32(across, v), within)
    }
}
