//! End-to-end regression tests of the hardening classes (issue 22): each module attacks one
//! class through the real binary — the CLI, or `gnn-coder serve` on loopback with a real client —
//! and expects a refusal, a bounded cost or a correct answer; never an escape, a panic or a
//! silent wrong result.

mod support;

#[path = "hardening/damage.rs"]
mod damage;

#[path = "hardening/errors.rs"]
mod errors;

#[cfg(target_os = "linux")]
#[path = "hardening/symlinks.rs"]
mod symlinks;

#[cfg(unix)]
#[path = "hardening/names.rs"]
mod names;

#[path = "hardening/hostile.rs"]
mod hostile;
