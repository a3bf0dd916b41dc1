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

/// The most entries a device list may have. Every entry gets its own copy of the model, so a
/// caller's list (the C API's `lofi_load_params.devices`, `--device`) must not be able to ask for
/// an unbounded number of them; no machine has more GPUs than this.
pub const MAX_DEVICES: usize = 64;

/// Parses a comma-separated device list (`"cuda:0,cuda:1"`, `"cpu,cpu"`): at least one device and
/// at most [`MAX_DEVICES`]; the first entry that is no device is named in the error.
pub fn parse_device_list(text: &str) -> Result<Vec<DeviceSpec>> {
    let entries = text.split(',').count();
    if entries > MAX_DEVICES {
        return Err(Error::invalid_argument(format!(
            "the device list has {entries} entries; at most {MAX_DEVICES} are allowed"
        )));
    }
    text.split(',').map(str::parse).collect()
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

/// The CPU's native bfloat16 matrix instructions, which make bfloat16 networks worth running on
/// the CPU (without them libtorch converts every operand to float32 and bfloat16 is slower than
/// float32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    /// AVX512-BF16 (`vdpbf16ps`): Intel Cooper Lake and later, AMD Zen 4 and later.
    pub avx512_bf16: bool,
    /// AMX-BF16 tile matrix multiply: Intel Sapphire Rapids and later.
    pub amx_bf16: bool,
}

/// Environment variable that makes [`CpuFeatures::detect`] report no bfloat16 instructions, so
/// that the error path can be tested on a machine that has them. Not for production use.
pub const ASSUME_NO_BF16_ENV: &str = "LOFI_ASSUME_NO_BF16";

impl CpuFeatures {
    /// The features of the CPU this process runs on (honouring [`ASSUME_NO_BF16_ENV`]).
    pub fn detect() -> CpuFeatures {
        if std::env::var_os(ASSUME_NO_BF16_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
            return CpuFeatures::default();
        }
        Self::detect_hardware()
    }

    /// From the flags Linux lists in /proc/cpuinfo, which it shows only when the kernel also
    /// enables the register state (AVX-512, AMX tiles). `is_x86_feature_detected!("avx512bf16")`
    /// is not stable at the minimum Rust version (1.88), and CPUID alone does not say whether the
    /// OS enables the state. Elsewhere (no /proc/cpuinfo): no bfloat16 instructions assumed.
    fn detect_hardware() -> CpuFeatures {
        std::fs::read_to_string("/proc/cpuinfo").map(|info| Self::from_cpuinfo(&info)).unwrap_or_default()
    }

    /// Parses the `flags` line of /proc/cpuinfo text.
    pub fn from_cpuinfo(info: &str) -> CpuFeatures {
        let Some(flags) = info.lines().find(|l| l.starts_with("flags")) else {
            return CpuFeatures::default();
        };
        let has = |name: &str| flags.split_whitespace().any(|f| f == name);
        CpuFeatures { avx512_bf16: has("avx512_bf16"), amx_bf16: has("amx_bf16") && has("amx_tile") }
    }

    /// Whether bfloat16 matrix products run natively.
    pub fn has_native_bf16(&self) -> bool {
        self.avx512_bf16 || self.amx_bf16
    }
}

/// The CPU's vendor as /proc/cpuinfo names it (GenuineIntel, AuthenticAMD, HygonGenuine, ...);
/// None where there is no such file or line.
pub fn cpu_vendor() -> Option<String> {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| vendor_from_cpuinfo(&info).map(str::to_owned))
}

/// Parses the `vendor_id` line of /proc/cpuinfo text.
pub fn vendor_from_cpuinfo(info: &str) -> Option<&str> {
    let line = info.lines().find(|l| l.starts_with("vendor_id"))?;
    Some(line.split_once(':')?.1.trim())
}

impl Precision {
    /// Checks that this precision can run on the CPU with `features`: float32 always; bfloat16
    /// with native bfloat16 matrix instructions; float16 never (libtorch's CPU float16 products
    /// are emulated and slower than float32).
    pub fn check_cpu(self, features: CpuFeatures) -> Result<()> {
        match self {
            Precision::F32 => Ok(()),
            Precision::BF16 if features.has_native_bf16() => Ok(()),
            Precision::BF16 => Err(Error::invalid_argument(
                "precision bf16 on the CPU needs native bfloat16 matrix instructions (avx512_bf16 or amx_bf16), \
                 which this CPU lacks; use f32 on this CPU, or bf16 on CUDA",
            )),
            Precision::F16 => Err(Error::invalid_argument(
                "precision f16 is available on CUDA only; use f32 (or bf16 where the CPU has avx512_bf16 or \
                 amx_bf16) on the CPU",
            )),
        }
    }
}

#[cfg(test)]
mod device_list_tests {
    use super::*;

    #[test]
    fn the_vendor_is_read_from_cpuinfo() {
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n";
        assert_eq!(vendor_from_cpuinfo(info), Some("AuthenticAMD"));
        assert_eq!(vendor_from_cpuinfo("processor : 0\n"), None);
    }

    #[test]
    fn device_lists_are_parsed_and_bounded() {
        assert_eq!(parse_device_list("cuda:0, cuda:1").unwrap(), [DeviceSpec::Cuda(0), DeviceSpec::Cuda(1)]);
        assert_eq!(parse_device_list(&vec!["cpu"; MAX_DEVICES].join(",")).unwrap().len(), MAX_DEVICES);
        let err = parse_device_list(&vec!["cpu"; MAX_DEVICES + 1].join(",")).unwrap_err().to_string();
        assert!(err.contains("65 entries") && err.contains("at most 64"), "{err}");
        let err = parse_device_list("cpu,tpu").unwrap_err().to_string();
        assert!(err.contains("tpu"), "{err}");
        assert!(parse_device_list("").is_err());
    }
}
