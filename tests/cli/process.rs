//! What the process tests share: the binary under test and a free port to serve it on.

pub const BIN: &str = env!("CARGO_BIN_EXE_tealight");

/// A port nothing listens on now (the OS picks it; the server binds it moments later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
