//! The `emqx-relup` binary (also answers as `emqx`): all work is in the library.

use std::process::ExitCode;

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    // Fault tests only: reads FAILPOINTS (see `emqx_handoff::faults`).
    let _faults = emqx_handoff::faults::setup();
    emqx_relup::cli::main()
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    eprintln!("ERROR: {}", emqx_relup::Error::Unsupported);
    ExitCode::from(emqx_relup::Error::Unsupported.class().code())
}
