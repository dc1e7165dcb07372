//! `highwater`: parse arguments → run a command → exit code.
//!
//! Exit codes (PRODUCT.md): 0 success, 1 a run failed, 2 bad usage or
//! configuration. Errors print their whole cause chain, with every secret
//! of the configuration redacted.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    cli::output::init_logging(args.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(cli::dispatch(args));
    // Do not wait for background connection tasks.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    ExitCode::from(code as u8)
}
