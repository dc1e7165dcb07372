//! One file per command. Each returns the process exit code.

mod changes;
mod check;
mod completions;
mod demo;
mod expr;
mod init;
mod init_from;
pub mod output;
pub mod pipeline;
mod run;
mod runs;
mod state;
mod verify;
pub mod windows;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use highwater_config::Plan;
use highwater_core::Error;

/// Incremental loads from operational databases into files, object storage
/// and databases: one full load, then only what changed.
///
/// Quick start: `highwater demo` runs the Data Factory watermark tutorial on
/// an embedded SQLite database. For your own tables: `highwater init`, edit
/// highwater.yaml, `highwater check`, `highwater run`.
#[derive(Parser, Debug)]
#[command(
    name = "highwater",
    version,
    about,
    long_about,
    propagate_version = true
)]
pub struct Args {
    /// The configuration file.
    #[arg(
        short,
        long,
        global = true,
        env = "HIGHWATER_CONFIG",
        default_value = "highwater.yaml"
    )]
    pub config: PathBuf,

    /// More log output (-v: info, -vv: debug). HIGHWATER_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log output: `text`, or `json` for log shippers (one JSON object per
    /// line on stderr, every run event included).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "HIGHWATER_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: output::LogFormat,

    /// Set by `main` when `--config` or HIGHWATER_CONFIG was given (not the default).
    #[arg(skip)]
    pub config_explicit: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the Data Factory incremental-copy tutorial end to end on an
    /// embedded SQLite database and a local folder. No server, no config.
    Demo {
        /// Folder for the demo's database, config, state and output files.
        #[arg(long, default_value = "highwater-demo")]
        dir: PathBuf,
    },
    /// Write a commented highwater.yaml to start from; with `--from URL`,
    /// one stream per table of that database (key, cursor and mode
    /// proposed, with the reasons in comments).
    Init {
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
        /// Discover the tables of this database: sqlite://FILE,
        /// postgres://USER@HOST:5432/DB, mysql://USER@HOST:3306/DB. A
        /// password in it is not written: the file gets ${SOURCE_PASSWORD}.
        #[arg(long, value_name = "URL")]
        from: Option<String>,
        /// Only this schema (PostgreSQL; MariaDB/MySQL: database).
        #[arg(long, requires = "from")]
        schema: Option<String>,
        /// Only tables matching these patterns: `orders,cust*` (`*`, `?`;
        /// case-insensitive; `schema.table` or `table`).
        #[arg(long, requires = "from", value_name = "PATTERN")]
        tables: Option<String>,
        /// The target: file://./lake (default), s3://bucket/prefix,
        /// az://container/prefix, or a database URL.
        #[arg(long, requires = "from", value_name = "URL")]
        to: Option<String>,
        /// File targets: csv, parquet or jsonl.
        #[arg(
            long,
            requires = "from",
            default_value = "parquet",
            value_parser = ["csv", "parquet", "jsonl"]
        )]
        format: String,
        /// Give every stream this `schedule:` (cron, e.g. "*/15 * * * *")
        /// for `highwater serve`; without it the line is a comment.
        #[arg(long, requires = "from", value_name = "CRON")]
        schedule: Option<String>,
    },
    /// Validate the configuration and test every connection and stream.
    Check {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run streams once: the first run copies everything, later runs the delta.
    Run {
        /// Streams to run (default: all).
        streams: Vec<String>,
        /// Ignore the saved positions and copy everything again.
        #[arg(long)]
        full_refresh: bool,
        /// Print the run record as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Write nothing, move no position: print for each stream the
        /// range it would read (from its position to the upper bound a run
        /// would pick now, with lag and held-back rows), the rows it would
        /// deliver (read and counted) and its output. Same as `highwater plan`.
        #[arg(long)]
        dry_run: bool,
    },
    /// What `run` would do now, without writing: `run --dry-run`.
    Plan {
        /// Streams (default: all).
        streams: Vec<String>,
        /// As if with `run --full-refresh`.
        #[arg(long)]
        full_refresh: bool,
        /// Print as JSON (an array, one object per stream).
        #[arg(long)]
        json: bool,
    },
    /// Compare each stream's target with its source up to the stream's
    /// committed position: rows compared, missing, extra and different keys.
    /// Exit 0 when equal, 1 when not, 2 for bad usage. See docs/verify.md.
    Verify {
        /// Streams (default: all).
        streams: Vec<String>,
        /// Re-copy exactly the differing keys (one stream), then verify again.
        #[arg(long)]
        repair: bool,
        /// Print as JSON (an array, one object per stream, every key).
        #[arg(long)]
        json: bool,
    },
    /// Show past runs, or one run with `runs show RUN_ID`.
    Runs {
        #[command(subcommand)]
        show: Option<RunsCommand>,
        /// How many runs to list.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show each stream's position (watermark or version), or reset one.
    State {
        #[command(subcommand)]
        reset: Option<StateCommand>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change tracking installed in source databases: `changes status`,
    /// `changes disable STREAM`.
    Changes {
        #[command(subcommand)]
        command: ChangesCommand,
    },
    /// Run streams on their `schedule:` and serve the monitoring page,
    /// /metrics (Prometheus) and /api/runs until Ctrl-C.
    Serve {
        /// Address to listen on (port 0 picks a free port; the address is printed).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The Data Factory git root whose `trigger/*.json` run
        /// (ScheduleTrigger, TumblingWindowTrigger). Default: the config's
        /// folder, when it holds `trigger/`.
        #[arg(long, value_name = "DIR")]
        factory: Option<PathBuf>,
    },
    /// Tumbling windows of the factory's triggers and of streams with
    /// `window:`: each due window with its status (pending, running,
    /// succeeded, retrying, failed) and attempts; `windows rerun NAME
    /// --from T --to T` runs a range again.
    Windows {
        #[command(subcommand)]
        command: Option<WindowsCommand>,
        /// Only this trigger (or windowed stream).
        name: Option<String>,
        /// The Data Factory git root (default: the config's folder).
        #[arg(long, value_name = "DIR", global = true)]
        factory: Option<PathBuf>,
        /// Print as JSON.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Data Factory pipelines: `pipeline run FILE.json|NAME [--factory DIR]
    /// [--parameters FILE.json] [--param k=v]…`.
    Pipeline {
        #[command(subcommand)]
        command: PipelineCommand,
    },
    /// Print a shell completion script: `highwater completions bash >
    /// /etc/bash_completion.d/highwater` (zsh: into a folder of $fpath as
    /// `_highwater`; fish: ~/.config/fish/completions/highwater.fish).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `highwater man | man -l -`, or
    /// `highwater man run` for one command.
    Man {
        /// One command's page instead of the whole program's.
        command: Option<String>,
    },
    /// Evaluate a Data Factory expression, e.g. `highwater expr "@concat('a', 'b')"`.
    Expr {
        /// The expression, as it would appear in a pipeline's JSON string.
        expression: String,
        /// A JSON file with parameters, variables, activity outputs, item, now, …
        #[arg(long)]
        context: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum PipelineCommand {
    /// Run a pipeline from a Data Factory git layout (`pipeline/`,
    /// `dataset/`, `linkedService/`, `trigger/` under the factory root):
    /// `pipeline run pipeline/X.json`, or by name: `pipeline run X
    /// --factory ROOT` (ROOT defaults to the current folder when the
    /// argument is not a file). Linked services map to the connections of
    /// `highwater.yaml` by name.
    Run {
        /// The pipeline file (`pipeline.json`, `pipeline/X.json`), or the
        /// pipeline's name (its `name` in `pipeline/*.json`).
        #[arg(value_name = "FILE|NAME")]
        file: PathBuf,
        /// The factory's git root to find the pipeline NAME in (its
        /// `pipeline/` folder).
        #[arg(long, value_name = "DIR")]
        factory: Option<PathBuf>,
        /// A parameter file, as passed to `Invoke-AzDataFactoryV2Pipeline
        /// -ParameterFile`: a JSON object of name → value, or ARM-style
        /// `{"parameters": {"name": {"value": …}}}`. `--param` wins over it.
        #[arg(long = "parameters", value_name = "FILE.json")]
        parameters: Option<PathBuf>,
        /// A pipeline parameter: `--param name=value`; JSON for non-string
        /// parameters (`--param tableList='[{"TABLE_NAME":"a"}]'`).
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Print the run record as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Run an earlier pipeline run again: the same pipeline file and
    /// parameters, a new run id. With --from-failed (Data Factory's "rerun
    /// from failed activity") the top-level activities that succeeded are
    /// not run again; their outputs and the variables they set are reused,
    /// and a Copy that had published before its run was killed is not
    /// copied twice.
    Rerun {
        /// The run id (or a unique prefix), from `highwater runs`.
        run_id: String,
        /// Reuse what succeeded; run the failed activities and what follows.
        #[arg(long)]
        from_failed: bool,
        /// Print the new run record as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum WindowsCommand {
    /// Run the windows of trigger (or windowed stream) NAME that start in
    /// [--from, --to) again, now, whatever they came to before.
    Rerun {
        name: String,
        /// First window start (ISO 8601), inclusive.
        #[arg(long)]
        from: String,
        /// Last bound (ISO 8601), exclusive; default: every due window from --from.
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// One run with each stream's activity.
    Show {
        /// Run id (or a unique prefix).
        run_id: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ChangesCommand {
    /// Whether change tracking is complete, incomplete (naming what is
    /// missing) or not set up for each change_tracking stream, with its
    /// generation and current and minimum valid versions.
    Status {
        /// Streams (default: every change_tracking stream).
        streams: Vec<String>,
    },
    /// Remove the triggers, change log and meta row that the stream's first
    /// run created. The next run sets them up again and reloads in full.
    /// Refused while other change_tracking streams use the same table.
    Disable {
        /// The stream's name.
        stream: String,
        /// Remove them although other streams use the same table (those
        /// streams reload in full on their next run).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum StateCommand {
    /// Forget a stream's position: its next run copies everything.
    Reset {
        /// The stream's name.
        stream: String,
    },
}

pub async fn dispatch(args: Args) -> i32 {
    let config = args.config.clone();
    match args.command {
        Command::Demo { dir } => demo::run(&dir).await,
        Command::Init {
            force, from: None, ..
        } => init::run(&config, force),
        Command::Init {
            force,
            from: Some(from),
            schema,
            tables,
            to,
            format,
            schedule,
        } => {
            init_from::run(init_from::InitFrom {
                config: &config,
                force,
                from: &from,
                schema: schema.as_deref(),
                tables: tables.as_deref(),
                to: to.as_deref(),
                format: &format,
                schedule: schedule.as_deref(),
            })
            .await
        }
        Command::Check { json } => check::run(&config, json).await,
        Command::Run {
            streams,
            full_refresh,
            json,
            dry_run: false,
        } => run::run(&config, streams, full_refresh, json).await,
        Command::Run {
            streams,
            full_refresh,
            json,
            dry_run: true,
        }
        | Command::Plan {
            streams,
            full_refresh,
            json,
        } => run::dry_run(&config, streams, full_refresh, json).await,
        Command::Verify {
            streams,
            repair,
            json,
        } => verify::run(&config, streams, repair, json).await,
        Command::Runs {
            show: None,
            limit,
            json,
        } => runs::list(&config, limit, json).await,
        Command::Runs {
            show: Some(RunsCommand::Show { run_id, json }),
            json: json_outer,
            ..
        } => runs::show(&config, &run_id, json || json_outer).await,
        Command::State { reset: None, json } => state::show(&config, json).await,
        Command::State {
            reset: Some(StateCommand::Reset { stream }),
            ..
        } => state::reset(&config, &stream).await,
        Command::Changes {
            command: ChangesCommand::Status { streams },
        } => changes::status(&config, streams).await,
        Command::Changes {
            command: ChangesCommand::Disable { stream, force },
        } => changes::disable(&config, &stream, force).await,
        Command::Serve { listen, factory } => {
            crate::serve::run(&config, &listen, factory.as_deref()).await
        }
        Command::Windows {
            command,
            name,
            factory,
            json,
        } => match command {
            None => windows::list(&config, factory.as_deref(), name.as_deref(), json).await,
            Some(WindowsCommand::Rerun { name, from, to }) => {
                windows::rerun(
                    &config,
                    factory.as_deref(),
                    &name,
                    &from,
                    to.as_deref(),
                    json,
                )
                .await
            }
        },
        Command::Completions { shell } => completions::completions(shell),
        Command::Man { command } => completions::man(command.as_deref()),
        Command::Expr {
            expression,
            context,
        } => expr::run(&expression, context.as_deref()),
        Command::Pipeline {
            command:
                PipelineCommand::Run {
                    file,
                    factory,
                    parameters,
                    params,
                    json,
                },
        } => {
            let given = pipeline::Given {
                factory,
                parameters,
                params,
            };
            pipeline::run(&config, args.config_explicit, &file, given, json).await
        }
        Command::Pipeline {
            command:
                PipelineCommand::Rerun {
                    run_id,
                    from_failed,
                    json,
                },
        } => pipeline::rerun(&config, &run_id, from_failed, json).await,
    }
}

/// Read and validate the config; print the error and return exit 2 on failure.
pub fn load_plan(path: &Path) -> Result<Plan, i32> {
    load_plan_with(path, highwater_config::plan::load)
}

type Loader = fn(&str, &str, &Path, &dyn Fn(&str) -> Option<String>) -> Result<Plan, Error>;

/// [`load_plan`] with another validation (`load_connections` for pipelines).
pub fn load_plan_with(path: &Path, load: Loader) -> Result<Plan, i32> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                " (create one with `highwater init`, or pass --config)"
            } else {
                ""
            };
            output::error(&format!("cannot read {}: {e}{hint}", path.display()));
            return Err(2);
        }
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };
    let env = |k: &str| std::env::var(k).ok();
    load(&path.display().to_string(), &text, &base, &env).map_err(|e: Error| {
        output::error(&e.to_string());
        2
    })
}

/// Open the state store a validated config names; on failure print the
/// (redacted) error and return the exit code.
pub async fn open_state(
    plan: &Plan,
) -> Result<std::sync::Arc<dyn highwater_core::StateStore>, i32> {
    highwater_engine::open_state(plan).await.map_err(|e| {
        output::error(&plan.secrets.redact(&e.to_string()));
        e.exit_code()
    })
}

/// Load and validate the config, then open its state store; errors are
/// printed and the exit code returned.
pub async fn load_plan_and_state(
    config: &Path,
) -> Result<(Plan, std::sync::Arc<dyn highwater_core::StateStore>), i32> {
    let plan = load_plan(config)?;
    let state = open_state(&plan).await?;
    Ok((plan, state))
}

/// [`load_plan_and_state`] for commands that only read or edit the state
/// store (`runs`, `state`): the connections' `${ENV}` need not be set, and
/// a config without streams is valid.
pub async fn load_history_and_state(
    config: &Path,
) -> Result<(Plan, std::sync::Arc<dyn highwater_core::StateStore>), i32> {
    let plan = load_plan_with(config, highwater_config::plan::load_for_history)?;
    let state = open_state(&plan).await?;
    Ok((plan, state))
}
