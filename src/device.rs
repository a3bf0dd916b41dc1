//! Where computation runs and in which precision.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A compute device: the CPU or one CUDA GPU by index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = Error;
    /// `cpu`, `cuda` (GPU 0) or `cuda:N`.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(i)) => Ok(DeviceSpec::Cuda(i)),
                _ => Err(Error::invalid_argument(format!("unknown device '{s}': use cpu, cuda or cuda:N"))),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceSpec {
    /// The libtorch device, after checking that it exists.
    pub fn resolve(self) -> Result<tch::Device> {
        match self {
            DeviceSpec::Cpu => Ok(tch::Device::Cpu),
            DeviceSpec::Cuda(i) => {
                if !tch::Cuda::is_available() {
                    return Err(Error::DeviceUnavailable(format!(
                        "{self} requested but CUDA is not available (no GPU or driver on this machine)"
                    )));
                }
                let count = tch::Cuda::device_count() as usize;
                if i >= count {
                    return Err(Error::DeviceUnavailable(format!(
                        "{self} requested but this machine has {count} CUDA device(s)"
                    )));
                }
                Ok(tch::Device::Cuda(i))
            }
        }
    }
}

/// Arithmetic precision of the networks during inference. The filter and the sampling
/// coordinates always stay float32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    BF16,
    F16,
}

impl Precision {
    pub fn kind(self) -> tch::Kind {
        match self {
            Precision::F32 => tch::Kind::Float,
            Precision::BF16 => tch::Kind::BFloat16,
            Precision::F16 => tch::Kind::Half,
        }
    }
    pub fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::BF16 | Precision::F16 => 2,
        }
    }
}

impl FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" | "fp32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::BF16),
            "f16" | "float16" | "fp16" | "half" => Ok(Precision::F16),
            other => {
                Err(Error::invalid_argument(format!("unknown precision '{other}': use f32, bf16 or f16")))
            }
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::BF16 => "bf16",
            Precision::F16 => "f16",
        })
    }
}
