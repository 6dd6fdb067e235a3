//! # CPU inference kernels for the transformer
//!
//! Inference spends nearly all its time in the transformer's linear layers (about 10.6 M
//! multiply-adds per token; attention adds ~5% at 100 tokens). burn's `flex` backend runs them
//! through general tensor ops: every batch is padded to its longest text, every op allocates,
//! and a short query pays dispatch costs that dwarf its arithmetic. This module is a
//! forward-only MiniLM encoder on plain slices, built once from the loaded burn module (so
//! fine-tuned layers and the pretrained ones take the same path), or for query embedding alone
//! straight from the weight files ([`crate::query`], [`Encoder::from_tensors`]), with three
//! habits:
//!
//! * **No padding at all.** The texts of a batch are concatenated into one `[T, D]` matrix of
//!   tokens; the linear layers run on all `T` rows at once and attention runs per text, on its
//!   own length. A batch of one 12-token query does 12 rows of work.
//! * **Packed weights, fused layouts.** Query, key and value are one `[D, 3D]` matrix. Weights
//!   are packed once at load into the layout the micro-kernels read (panels of 64 output
//!   columns, consecutive pairs (bf16) or quads (int8) of the reduction dimension side by
//!   side).
//! * **The head on the same slices.** [`CodeHead`] runs the graph network and fusion on the
//!   ragged token states directly (span means gather token rows by their ragged index), so
//!   nothing is padded or copied into tensors between the transformer and the code vector.
//! * **Reduced precision where the CPU has it.** [`Precision`] picks how the linear layers
//!   multiply; everything between the products (bias, GELU, residuals, layer norms, softmax,
//!   attention) stays f32.
//!   - `int8` (CPUs with AVX-512 VNNI, the default there): weights rounded once to int8 with
//!     one scale per output column; each input row quantized on the fly to unsigned bytes with
//!     its own scale and zero point (its range, 0 included, onto 0..=255); `vpdpbusd`
//!     multiplies 64 byte pairs per instruction into i32, and the epilogue subtracts
//!     `zero_row * sum(column)` and rescales. Four times the multiply-adds per instruction of
//!     f32 FMA; the parity test bounds its cost (cosine to sentence-transformers >= .99 per
//!     text, mean >= .998), README has dev MRR.
//!   - `bf16` (AVX-512 BF16): bfloat16 weights and inputs, f32 accumulation (`vdpbf16ps`),
//!     PyTorch's autocast recipe. About twice PyTorch f32 on the AMD EPYC of an earlier
//!     session, but half of our f32 on the Intel Xeon measured since, where `vdpbf16ps` issues at a quarter of the FMA rate; hence on request only.
//!   - `f32`: the `gemm` crate's kernels.
//!
//!   [`Precision::best`] is the default.
//!
//! Element-wise math (exp, erf-GELU, layer norm, softmax) is written as plain loops that the
//! compiler vectorizes, compiled three times (AVX-512, AVX2+FMA, baseline) and chosen at run
//! time, so the binary still runs on any x86-64 or other CPU.
//!
//! Threads: [`Encoder::encode`] takes a thread count. The engine embeds with one worker per
//! core, each calling with 1 (no synchronization inside a batch); a lone query uses every core
//! (the matrix products split by column panels).

mod encoder;
mod gemm;
mod head;
mod math;

pub(crate) use encoder::linear;
pub use encoder::{Encoder, States};
pub use gemm::{PackedLinear, Precision, bf16_supported, int8_supported};
pub use head::CodeHead;
pub(crate) use math::normalize_rows;

/// The instruction sets the element-wise kernels were compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    Avx512,
    Avx2,
    Generic,
}

pub(crate) fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Generic
    })
}

/// Defines `fn name(args)` whose body is compiled for AVX-512, AVX2+FMA and the baseline, and
/// dispatches on [`isa`] at run time.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn inner($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? { inner($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? { inner($($arg),*) }
                match $crate::cpu::isa() {
                    // SAFETY: the CPU has the features these were compiled for (checked by isa()).
                    $crate::cpu::Isa::Avx512 => return unsafe { v4($($arg),*) },
                    $crate::cpu::Isa::Avx2 => return unsafe { v3($($arg),*) },
                    $crate::cpu::Isa::Generic => {}
                }
            }
            inner($($arg),*)
        }
    };
}
pub(crate) use multiversion;

#[cfg(test)]
mod tests;
