//! The burn backend that trains, chosen by name.
//!
//! Inference always runs on the model crate's pure-Rust kernels; training runs on a burn
//! device. `flex` (burn's pure-Rust CPU backend) is always built in; the others need a cargo
//! feature of this crate (forwarded by the command line's features of the same name):
//!
//! | name       | feature   | backend                                   |
//! |------------|-----------|-------------------------------------------|
//! | `flex`     | —         | pure Rust, CPU                            |
//! | `tch`      | `tch`     | LibTorch, CPU                             |
//! | `tch-cuda` | `tch`     | LibTorch, first CUDA GPU                  |
//! | `cuda`     | `cuda`    | burn's CUDA backend (CubeCL), first GPU   |
//! | `ndarray`  | `ndarray` | burn's ndarray backend                    |
//!
//! The weights a run writes are the same files whatever backend trained them.

use burn::prelude::Device;

use crate::error::{Result, TrainError};

/// The burn device `name` (see the module docs), or why this build cannot give it
/// ([`TrainError::MissingBackend`], [`TrainError::UnknownDevice`]).
pub fn training_device(name: &str) -> Result<Device> {
    let missing = |feature: &'static str| TrainError::MissingBackend {
        device: name.to_string(),
        feature,
    };
    Ok(match name {
        "flex" => Device::flex(),
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        "tch" => Device::libtorch(),
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        "tch-cuda" => Device::libtorch_cuda(0),
        #[cfg(feature = "cuda")]
        "cuda" => Device::cuda(0),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        "ndarray" => Device::ndarray(),
        "tch" | "tch-cuda" => return Err(missing("tch")),
        "cuda" => return Err(missing("cuda")),
        "ndarray" => return Err(missing("ndarray")),
        other => return Err(TrainError::UnknownDevice(other.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_is_always_built_and_unknown_names_say_what_exists() {
        assert!(training_device("flex").is_ok());
        let err = training_device("tpu").unwrap_err().to_string();
        assert_eq!(
            err,
            "--device tpu: use flex, tch, tch-cuda, cuda or ndarray"
        );
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_backend_left_out_of_the_build_names_its_feature() {
        let err = training_device("cuda").unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
