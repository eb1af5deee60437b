//! Command-line entry point: parses arguments and calls into the library.
fn main() {
    eprintln!("microseed: command line not wired yet");
    std::process::exit(1);
}
