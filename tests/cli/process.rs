//! What the process tests share: the binary under test, a free port, and the `serve` command
//! they start it with.

use std::process::{Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_tealight");

/// A port nothing listens on now (the OS picks it; the server binds it moments later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `tealight serve` on 127.0.0.1:`port` with request logs off and output discarded, plus
/// `flags` (callers set the sizes, environment and stderr they need).
pub fn serve_command(port: u16, flags: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--disable-log-requests")
        .args(flags)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}
