//! Compiles tealight's own CUDA kernels (`kernels/*.cu`) to PTX when the `cuda` feature is on.
//! The default (CPU) build never runs nvcc.
//!
//! nvcc is `$NVCC`, else `$CUDA_ROOT|$CUDA_PATH|$CUDA_HOME/bin/nvcc`, else `nvcc` on `PATH`
//! (scripts/cuda/build.sh sets these up from the pinned CUDA 13.0 wheels). The target is
//! `-arch=sm_$CUDA_COMPUTE_CAP` (default 90: H100/H200). The PTX is embedded in the binary and
//! JIT-compiled by the driver at first use; the GPU machines run driver 580 (CUDA 13.0), which
//! loads PTX ISA 9.0 and older, so a newer ISA is refused here rather than at run time
//! (`TEALIGHT_ALLOW_NEWER_PTX=1` skips that check).

use std::path::{Path, PathBuf};
use std::process::Command;

/// (source, output name, extra nvcc arguments). `attention.cu` is built once per pair of
/// activation and KV-cache dtypes (`src/kernels/mod.rs`: `kernel_name`), so that a process
/// JIT-compiles only the kernels of the pair it serves.
const UNITS: &[(&str, &str, &[&str])] = &[
    ("kv_cache.cu", "kv_cache", &[]),
    ("attention.cu", "attention_f32", &["-DTL_UNIT_f32"]),
    (
        "attention.cu",
        "attention_f32_kvf16",
        &["-DTL_UNIT_f32_kvf16"],
    ),
    (
        "attention.cu",
        "attention_f32_kvbf16",
        &["-DTL_UNIT_f32_kvbf16"],
    ),
    (
        "attention.cu",
        "attention_f32_kvfp8",
        &["-DTL_UNIT_f32_kvfp8"],
    ),
    ("attention.cu", "attention_f16", &["-DTL_UNIT_f16"]),
    (
        "attention.cu",
        "attention_f16_kvbf16",
        &["-DTL_UNIT_f16_kvbf16"],
    ),
    (
        "attention.cu",
        "attention_f16_kvfp8",
        &["-DTL_UNIT_f16_kvfp8"],
    ),
    ("attention.cu", "attention_bf16", &["-DTL_UNIT_bf16"]),
    (
        "attention.cu",
        "attention_bf16_kvf16",
        &["-DTL_UNIT_bf16_kvf16"],
    ),
    (
        "attention.cu",
        "attention_bf16_kvfp8",
        &["-DTL_UNIT_bf16_kvfp8"],
    ),
];

/// Newest PTX ISA the CUDA 13.0 driver (580) loads.
const MAX_PTX_ISA: (u32, u32) = (9, 0);

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=kernels");
    for var in [
        "NVCC",
        "CUDA_ROOT",
        "CUDA_PATH",
        "CUDA_HOME",
        "CUDA_COMPUTE_CAP",
        "TEALIGHT_ALLOW_NEWER_PTX",
        "TEALIGHT_NVCC_FLAGS",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let kernels = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let nvcc = find_nvcc();
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let cap = cap.trim().trim_start_matches("sm_").replace('.', "");
    let extra: Vec<String> = std::env::var("TEALIGHT_NVCC_FLAGS")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();

    // The units are independent: compile them side by side, as many at once as cargo's job
    // count (eleven nvcc processes at once on a 2-core machine only slow everything beside them).
    let jobs = std::env::var("NUM_JOBS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(2)
        .clamp(1, UNITS.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let compile = |&(src, name, defines): &(&str, &str, &[&str])| -> Result<(), String> {
        let out = out_dir.join(format!("{name}.ptx"));
        let output = Command::new(&nvcc)
            .arg("--ptx")
            .arg(format!("-arch=sm_{cap}"))
            .args(["-O3", "-std=c++17", "-lineinfo"])
            .args(defines)
            .args(&extra)
            .arg("-I")
            .arg(&kernels)
            .arg("-o")
            .arg(&out)
            .arg(kernels.join(src))
            .output()
            .map_err(|e| format!("cannot run {}: {e}", nvcc.display()))?;
        if !output.status.success() {
            return Err(format!(
                "nvcc failed on kernels/{src} ({name}):\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        check_ptx_isa(&out)
    };
    let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(unit) = UNITS.get(i) else {
                            return done;
                        };
                        done.push(compile(unit));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("nvcc thread"))
            .collect()
    });
    let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if !errors.is_empty() {
        panic!(
            "building tealight's CUDA kernels failed:\n{}",
            errors.join("\n")
        );
    }
}

fn find_nvcc() -> PathBuf {
    if let Some(nvcc) = std::env::var_os("NVCC") {
        return PathBuf::from(nvcc);
    }
    for var in ["CUDA_ROOT", "CUDA_PATH", "CUDA_HOME"] {
        if let Some(root) = std::env::var_os(var) {
            let candidate = Path::new(&root).join("bin").join("nvcc");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("nvcc")
}

/// Refuses PTX whose `.version` is newer than the GPU machines' driver loads.
fn check_ptx_isa(ptx: &Path) -> Result<(), String> {
    if std::env::var_os("TEALIGHT_ALLOW_NEWER_PTX").is_some() {
        return Ok(());
    }
    let text = std::fs::read_to_string(ptx).map_err(|e| format!("{}: {e}", ptx.display()))?;
    let version = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(".version "))
        .ok_or_else(|| format!("{}: no .version line", ptx.display()))?;
    let (major, minor) = version
        .trim()
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        .ok_or_else(|| format!("{}: unreadable .version {version}", ptx.display()))?;
    if (major, minor) > MAX_PTX_ISA {
        return Err(format!(
            "{}: PTX ISA {major}.{minor} is newer than {}.{} (CUDA 13.0, driver 580) loads; build \
             with the pinned CUDA 13.0 nvcc (scripts/cuda/setup-toolchain.sh) or set \
             TEALIGHT_ALLOW_NEWER_PTX=1 for a newer driver",
            ptx.display(),
            MAX_PTX_ISA.0,
            MAX_PTX_ISA.1
        ));
    }
    Ok(())
}
