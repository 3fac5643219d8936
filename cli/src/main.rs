//! `moss`: the one binary. It parses the command line, loads settings, starts tracing and hands
//! over to a library's `run`. Every operator mistake ends as one plain sentence and a non-zero exit.

use clap::Parser;

/// moss keeps Microsoft Online Services accounts in step with an on-premises directory.
#[derive(Debug, Parser)]
#[command(name = "moss", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
