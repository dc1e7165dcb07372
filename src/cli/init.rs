//! `highwater init`: write the commented template.

use std::path::Path;

use super::output;

pub fn run(config: &Path, force: bool) -> i32 {
    if config.exists() && !force {
        output::error(&format!(
            "{} exists already (use --force to replace it)",
            config.display()
        ));
        return 2;
    }
    match std::fs::write(config, highwater_config::INIT_TEMPLATE) {
        Ok(()) => {
            println!(
                "wrote {}: edit its connections and streams, then `highwater check`",
                config.display()
            );
            0
        }
        Err(e) => {
            output::error(&format!("cannot write {}: {e}", config.display()));
            1
        }
    }
}
