//! `--device` parsing and device selection. The CPU-only-build checks run in the default build;
//! the `cuda` ones only where a `cuda` build runs (a GPU machine: such a binary needs the driver).

use clap::Parser;
use tealight::Error;
use tealight::device::{DeviceChoice, select_device};

#[test]
fn parses_every_accepted_spelling() {
    let cases = [
        ("auto", DeviceChoice::Auto),
        ("cpu", DeviceChoice::Cpu),
        ("cuda", DeviceChoice::Cuda(0)),
        ("cuda:0", DeviceChoice::Cuda(0)),
        ("cuda:1", DeviceChoice::Cuda(1)),
        ("cuda:17", DeviceChoice::Cuda(17)),
        ("CUDA:2", DeviceChoice::Cuda(2)),
        ("Cpu", DeviceChoice::Cpu),
        (" auto ", DeviceChoice::Auto),
    ];
    for (s, want) in cases {
        assert_eq!(s.parse::<DeviceChoice>(), Ok(want), "{s:?}");
    }
}

#[test]
fn rejects_bad_strings() {
    for s in [
        "",
        "gpu",
        "cuda:",
        "cuda:x",
        "cuda:-1",
        "cuda:+1",
        "cuda:1.5",
        "cuda:0:1",
        "cuda 0",
        "cuda0",
        "metal",
        "cpu:0",
        "cuda:99999999999999999999999",
    ] {
        let err = s.parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(err.contains("auto, cpu, cuda or cuda:N"), "{s:?}: {err}");
    }
    let err = "cuda:-1".parse::<DeviceChoice>().unwrap_err().to_string();
    assert!(err.contains("non-negative integer"), "{err}");
}

#[test]
fn display_round_trips() {
    for choice in [
        DeviceChoice::Auto,
        DeviceChoice::Cpu,
        DeviceChoice::Cuda(0),
        DeviceChoice::Cuda(3),
    ] {
        assert_eq!(choice.to_string().parse::<DeviceChoice>(), Ok(choice));
    }
    assert_eq!(DeviceChoice::Cuda(0).to_string(), "cuda:0");
    assert_eq!(DeviceChoice::default(), DeviceChoice::Auto);
}

#[test]
fn parse_error_becomes_a_config_error() {
    let err: Error = "gpu".parse::<DeviceChoice>().unwrap_err().into();
    match err {
        Error::Config(message) => assert!(message.contains("gpu"), "{message}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[derive(Parser, Debug)]
struct Cli {
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
}

#[test]
fn works_as_a_clap_value() {
    let cli = Cli::try_parse_from(["tealight"]).unwrap();
    assert_eq!(cli.device, DeviceChoice::Auto);
    let cli = Cli::try_parse_from(["tealight", "--device", "cuda:1"]).unwrap();
    assert_eq!(cli.device, DeviceChoice::Cuda(1));
    let err = Cli::try_parse_from(["tealight", "--device", "gpu"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid device \"gpu\""), "{err}");
}

#[test]
fn cpu_is_always_there() {
    assert!(select_device(DeviceChoice::Cpu).unwrap().is_cpu());
}

#[cfg(not(feature = "cuda"))]
mod cpu_only_build {
    use super::*;

    #[test]
    fn auto_is_the_cpu() {
        assert!(select_device(DeviceChoice::Auto).unwrap().is_cpu());
    }

    #[test]
    fn cuda_is_a_clear_error() {
        for choice in [DeviceChoice::Cuda(0), DeviceChoice::Cuda(2)] {
            match select_device(choice) {
                Err(Error::Device(msg)) => {
                    assert!(msg.contains(&format!("--device {choice}")), "{msg}");
                    assert!(msg.contains("without the `cuda` feature"), "{msg}");
                }
                other => panic!("{choice}: unexpected {other:?}"),
            }
        }
    }
}

#[cfg(feature = "cuda")]
mod cuda_build {
    use super::*;

    #[test]
    fn auto_never_fails() {
        let device = select_device(DeviceChoice::Auto).unwrap();
        assert!(device.is_cpu() || device.is_cuda());
    }

    #[test]
    fn a_missing_gpu_is_a_clear_error() {
        match select_device(DeviceChoice::Cuda(4096)) {
            Err(Error::Device(msg)) => assert!(msg.contains("cuda:4096"), "{msg}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
