//! `highwater`: parse arguments → run a command → exit code.
//!
//! Exit codes (PRODUCT.md): 0 success, 1 a run failed, 2 bad usage or
//! configuration. Errors print their whole cause chain, with every secret
//! of the configuration redacted.

mod cli;
mod serve;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    quiet_broken_pipe();
    let matches = cli::Args::command().get_matches();
    let mut args = match cli::Args::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    args.config_explicit = matches!(
        matches.value_source("config"),
        Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
    );
    cli::output::init_logging(args.verbose, args.log_format);
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

/// `highwater runs | head` closes stdout early; `println!` then panics with
/// "Broken pipe". Exit quietly with the shell's SIGPIPE status instead of
/// printing a panic (Rust ignores SIGPIPE, and restoring it needs `unsafe`).
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info)
    }));
}
