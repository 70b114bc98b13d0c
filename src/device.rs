//! The `--device` choice (`auto | cpu | cuda | cuda:N`) and turning it into a candle device.
//!
//! `auto` takes CUDA device 0 when the binary was built with the `cuda` feature and a GPU answers,
//! and the CPU otherwise. Asking for CUDA explicitly never falls back: a CPU-only build, or a GPU
//! that does not answer, is an [`Error::Device`].

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::{Error, Result};

/// What `--device` asked for. Parses from `auto`, `cpu`, `cuda` (= `cuda:0`) or `cuda:N`
/// (ASCII case-insensitive); displays as `auto`, `cpu` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    /// A CUDA device by ordinal.
    Cuda(usize),
}

impl DeviceChoice {
    /// The accepted spellings, for help texts and error messages.
    pub const VALUES: &'static str = "auto, cpu, cuda or cuda:N";
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

/// A `--device` string that is none of the accepted spellings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseDeviceError(String);

impl fmt::Display for ParseDeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseDeviceError {}

impl From<ParseDeviceError> for Error {
    fn from(e: ParseDeviceError) -> Self {
        Error::invalid("device", e.0)
    }
}

impl FromStr for DeviceChoice {
    type Err = ParseDeviceError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let bad = |why: &str| {
            ParseDeviceError(format!(
                "invalid device {s:?}: {why}; expected {}",
                DeviceChoice::VALUES
            ))
        };
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "auto" => return Ok(DeviceChoice::Auto),
            "cpu" => return Ok(DeviceChoice::Cpu),
            "cuda" => return Ok(DeviceChoice::Cuda(0)),
            _ => {}
        }
        let Some(ordinal) = lower.strip_prefix("cuda:") else {
            return Err(bad("unknown device"));
        };
        // Digits only: `usize::from_str` would also take a leading `+`.
        if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the CUDA device number must be a non-negative integer"));
        }
        ordinal
            .parse()
            .map(DeviceChoice::Cuda)
            .map_err(|_| bad("the CUDA device number is too large"))
    }
}

/// Whether this binary was built with the `cuda` feature.
pub const fn cuda_compiled() -> bool {
    cfg!(feature = "cuda")
}

/// Opens the device `choice` names. See the module docs for what `auto` picks.
pub fn select_device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => {
            if !cuda_compiled() || !candle_core::utils::cuda_is_available() {
                return Ok(Device::Cpu);
            }
            match Device::new_cuda(0) {
                Ok(device) => Ok(device),
                Err(e) => {
                    tracing::info!("no CUDA device answered ({e}); using the CPU");
                    Ok(Device::Cpu)
                }
            }
        }
        DeviceChoice::Cuda(ordinal) => {
            if !cuda_compiled() || !candle_core::utils::cuda_is_available() {
                return Err(Error::Device(format!(
                    "--device {choice} needs CUDA, but this tealight binary was built without \
                     the `cuda` feature; rebuild it with `--features cuda` or use --device cpu"
                )));
            }
            Device::new_cuda(ordinal).map_err(|e| {
                Error::Device(format!(
                    "--device {choice}: CUDA device {ordinal} did not answer ({e}); \
                     check the GPU and its driver, or use --device cpu"
                ))
            })
        }
    }
}

/// A device's memory as the driver reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMemory {
    pub free: usize,
    pub total: usize,
}

/// Free and total memory of a CUDA device (an error on the CPU or in a CPU-only build).
#[cfg(feature = "cuda")]
pub fn device_memory(device: &Device) -> Result<DeviceMemory> {
    let cuda = device.as_cuda_device()?;
    let (free, total) = cuda
        .cuda_stream()
        .context()
        .mem_get_info()
        .map_err(|e| Error::Device(format!("cannot query GPU memory: {e}")))?;
    Ok(DeviceMemory { free, total })
}

/// Free and total memory of a CUDA device (an error on the CPU or in a CPU-only build).
#[cfg(not(feature = "cuda"))]
pub fn device_memory(_device: &Device) -> Result<DeviceMemory> {
    Err(Error::Device(
        "GPU memory can only be queried in a `cuda` build".into(),
    ))
}
