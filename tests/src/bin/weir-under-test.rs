//! The weir binary, built inside the tests package so tests can run it.

fn main() -> std::process::ExitCode {
    weir::cli::main()
}
