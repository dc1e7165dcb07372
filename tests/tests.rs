//! The one integration-test binary: drives the real `highwater` binary
//! against real PostgreSQL, real SQLite files and real folders.
//!
//! Services: PostgreSQL at `HIGHWATER_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), MariaDB at
//! `HIGHWATER_TEST_MYSQL` (default `mysql://root@127.0.0.1:3306`), and for
//! `mode: cdc` a MariaDB with the binary log at `HIGHWATER_TEST_MARIADB_BINLOG`
//! (default `mysql://root@127.0.0.1:3307`, started by `.ci/run`). A missing service fails
//! the test with the command that starts it. Each test makes its own
//! database and temporary folder.

#[macro_use]
mod util;

mod adf_control;
mod adf_copy;
mod adf_files;
mod adf_load;
mod adf_sinks;
mod adf_templates;
mod attack;
mod boundary;
mod cdc;
mod change_tracking;
mod cli;
mod completions;
mod crash;
mod ct_generations;
mod db_targets;
mod docs_examples;
mod dry_run;
mod first_hour;
mod hangs;
mod held_back;
mod hostile;
mod init_from;
mod late_commits;
mod load_values;
mod lost_ack;
mod mariadb;
mod memory;
mod monitor;
mod objects;
mod partitions;
mod pg_types;
mod pipeline;
mod pipeline_copies;
mod pipeline_rerun;
mod serve;
mod shared_partitions;
mod small_merge;
mod state_pg;
mod stream_windows;
mod triggers;
mod verify;
mod visibility;
mod watermark;
