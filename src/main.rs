//! The `amber` binary: everything lives in the library (see src/lib.rs).
#![deny(unsafe_code)]

fn main() {
    std::process::exit(amber::cli::main(std::env::args().collect()));
}
