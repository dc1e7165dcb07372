//! `highwater completions SHELL` and `highwater man [COMMAND]`: generated
//! from the clap definition in `cli/mod.rs`, so they never drift from it.

use std::io::Write;

use clap::CommandFactory;

use super::{Args, output};

/// The completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> i32 {
    let mut cmd = Args::command();
    clap_complete::generate(shell, &mut cmd, "highwater", &mut std::io::stdout());
    0
}

/// The man page (roff) of highwater, or of one of its commands, on stdout.
pub fn man(command: Option<&str>) -> i32 {
    let mut cmd = Args::command();
    cmd.build();
    let page = match command {
        None => cmd,
        Some(name) => match cmd.find_subcommand(name) {
            // `build` named it `highwater-COMMAND` (the page's title).
            Some(sub) => sub.clone(),
            None => {
                let names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
                output::error(&format!(
                    "no command {name} (commands: {})",
                    names.join(", ")
                ));
                return 2;
            }
        },
    };
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(page).render(&mut out) {
        output::error(&format!("cannot render the man page: {e}"));
        return 1;
    }
    let _ = std::io::stdout().write_all(&out);
    0
}
