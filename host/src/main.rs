//! The `weir` binary: parses the command line, runs it, prints the error chain.

use std::process::ExitCode;

fn main() -> ExitCode {
    weir::cli::main()
}
