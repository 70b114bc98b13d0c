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
        Error::config(e.0)
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

/// Opens the device `choice` names (see the module docs for what `auto` picks) and logs the
/// one chosen: with `auto`, a silent fall-back to the CPU would otherwise pass for a GPU run.
pub fn select_device(choice: DeviceChoice) -> Result<Device> {
    let device = open_choice(choice)?;
    tracing::info!(
        "device: {} (--device {choice}{})",
        describe(&device),
        if cuda_compiled() {
            ", a cuda build"
        } else {
            ", a CPU-only build"
        }
    );
    Ok(device)
}

/// The device as `cpu` or `cuda:N`: what the server reports as the device it runs on
/// (the start-up log and `tealight:device_info`).
pub fn describe(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_owned(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

fn open_choice(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => {
            if !cuda_compiled() || !candle_core::utils::cuda_is_available() {
                return Ok(Device::Cpu);
            }
            match open_cuda(0) {
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
            open_cuda(ordinal).map_err(|e| {
                Error::Device(format!(
                    "--device {choice}: CUDA device {ordinal} did not answer ({e}); \
                     check the GPU and its driver, or use --device cpu"
                ))
            })
        }
    }
}

/// A CUDA device with one explicit stream that every thread shares. (`Device::new_cuda` uses
/// the calling thread's per-thread stream: the loader's kernels and the engine thread's would run
/// on two streams with nothing ordering them.) Freed memory stays in the allocator's pool
/// instead of going back to the driver at each synchronisation; the KV budget already sets the
/// activation peak aside.
fn open_cuda(ordinal: usize) -> candle_core::Result<Device> {
    let device = Device::new_cuda_with_stream(ordinal)?;
    pool::single_stream(&device);
    if let Err(why) = pool::retain_freed_memory(&device) {
        tracing::debug!("allocator pool left as it is: {why}");
    }
    Ok(device)
}

/// The device allocator's high-water mark over a stretch of work (the profiling step).
pub struct PeakMemory {
    before: Option<u64>,
}

impl PeakMemory {
    /// Starts watching: resets the allocator's high-water mark and notes what is in use.
    pub fn start(device: &Device) -> Self {
        Self {
            before: pool::start_watch(device),
        }
    }

    /// Bytes allocated above the starting level at the busiest moment since [`Self::start`];
    /// `None` where the device cannot tell (the CPU, or no stream-ordered allocator).
    pub fn finish(self, device: &Device) -> Option<usize> {
        let before = self.before?;
        let high = pool::used_high(device)?;
        Some(high.saturating_sub(before) as usize)
    }
}

/// The stream-ordered allocator's pool (cuMemAllocAsync, which cudarc uses where the device
/// supports it): its attributes tell the peak of a step.
#[cfg(feature = "cuda")]
mod pool {
    use candle_core::Device;
    use candle_core::cuda_backend::cudarc::driver::sys;

    fn default_pool(device: &Device) -> Result<sys::CUmemoryPool, String> {
        let cuda = device.as_cuda_device().map_err(|e| e.to_string())?;
        let stream = cuda.cuda_stream();
        let ctx = stream.context();
        if !ctx.has_async_alloc() {
            return Err("the device has no stream-ordered allocator".into());
        }
        ctx.bind_to_thread().map_err(|e| e.to_string())?;
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        // SAFETY: `pool` is a valid out-pointer and the device handle comes from a live context.
        let status = unsafe { sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) };
        match status {
            sys::CUresult::CUDA_SUCCESS => Ok(pool),
            other => Err(format!("cuDeviceGetDefaultMemPool: {other:?}")),
        }
    }

    /// An explicit stream puts cudarc in multi-stream mode, where every allocation records two
    /// CUevents and every kernel argument a wait and a record, to order uses across streams.
    /// tealight runs every kernel, copy and cuBLAS call on the one stream [`super::open_cuda`]
    /// made (the loader's thread and the engine's share it), so stream order alone is enough:
    /// tracking is turned off before any tensor exists.
    pub fn single_stream(device: &Device) {
        if let Ok(cuda) = device.as_cuda_device() {
            // SAFETY: the tensors of this device are used on its one stream only (see above);
            // none exists yet, so none was created with tracking on.
            unsafe { cuda.disable_event_tracking() };
            tracing::debug!("cudarc event tracking: {}", cuda.is_event_tracking());
        }
    }

    fn get(pool: sys::CUmemoryPool, attr: sys::CUmemPool_attribute) -> Option<u64> {
        let mut value: u64 = 0;
        // SAFETY: these attributes are 64-bit values (cuuint64_t), written to `value`.
        let status =
            unsafe { sys::cuMemPoolGetAttribute(pool, attr, (&mut value as *mut u64).cast()) };
        (status == sys::CUresult::CUDA_SUCCESS).then_some(value)
    }

    fn set(pool: sys::CUmemoryPool, attr: sys::CUmemPool_attribute, mut value: u64) -> bool {
        // SAFETY: as in `get`; the driver reads a cuuint64_t.
        let status =
            unsafe { sys::cuMemPoolSetAttribute(pool, attr, (&mut value as *mut u64).cast()) };
        status == sys::CUresult::CUDA_SUCCESS
    }

    pub fn retain_freed_memory(device: &Device) -> Result<(), String> {
        let pool = default_pool(device)?;
        let attr = sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD;
        set(pool, attr, u64::MAX)
            .then_some(())
            .ok_or_else(|| "cannot set the release threshold".into())
    }

    pub fn start_watch(device: &Device) -> Option<u64> {
        let pool = default_pool(device).ok()?;
        let high = sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH;
        let current = sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_CURRENT;
        set(pool, high, 0).then_some(())?;
        get(pool, current)
    }

    pub fn used_high(device: &Device) -> Option<u64> {
        let pool = default_pool(device).ok()?;
        get(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
        )
    }

    pub fn trim(device: &Device) {
        if let Ok(pool) = default_pool(device) {
            // SAFETY: a pool handle from the driver; trimming only returns unused memory.
            let _ = unsafe { sys::cuMemPoolTrimTo(pool, 0) };
        }
    }
}

#[cfg(not(feature = "cuda"))]
mod pool {
    use candle_core::Device;

    pub fn single_stream(_device: &Device) {}

    pub fn retain_freed_memory(_device: &Device) -> Result<(), String> {
        Err("a CPU-only build".into())
    }

    pub fn start_watch(_device: &Device) -> Option<u64> {
        None
    }

    pub fn used_high(_device: &Device) -> Option<u64> {
        None
    }
}

/// A device's memory as the driver reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMemory {
    pub free: usize,
    pub total: usize,
}

/// Free and total memory of a CUDA device (an error on the CPU or in a CPU-only build), after
/// handing memory the allocator holds but does not use back to the driver.
#[cfg(feature = "cuda")]
pub fn device_memory(device: &Device) -> Result<DeviceMemory> {
    device.synchronize()?;
    pool::trim(device);
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
