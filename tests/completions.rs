//! `highwater completions SHELL` and `highwater man` (issue 13): generated
//! from the CLI definition, non-empty and parseable.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::util::*;

fn hw_out(args: &[&str]) -> String {
    let dir = Dir::new("completions");
    let o = dir.hw(args);
    assert_code(&o, 0);
    stdout(&o)
}

/// Run `prog args` with `input` on stdin; its output.
fn pipe(prog: &str, args: &[&str], input: &str) -> std::process::Output {
    let mut c = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{prog} is needed for this test: {e}"));
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

#[test]
fn completion_scripts_parse_and_know_the_commands() {
    let bash = hw_out(&["completions", "bash"]);
    assert!(bash.contains("complete -F _highwater"), "{bash}");
    for word in ["init", "plan", "--dry-run", "--from", "completions"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    let o = pipe("bash", &["-n"], &bash);
    assert!(o.status.success(), "bash -n: {}", stderr(&o));
    // The script loads and registers the completion.
    let o = pipe("bash", &[], &format!("{bash}\ncomplete -p highwater\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("_highwater"), "{}", stdout(&o));

    let zsh = hw_out(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef highwater"), "{zsh}");
    assert!(zsh.contains("--dry-run") && zsh.contains("--from"), "{zsh}");
    let fish = hw_out(&["completions", "fish"]);
    assert!(fish.contains("complete -c highwater"), "{fish}");
    assert!(fish.contains("dry-run") && fish.contains("from"), "{fish}");

    let dir = Dir::new("completions_bad");
    let o = dir.hw(&["completions", "tcsh"]);
    assert_code(&o, 2);
}

#[test]
fn man_pages_render() {
    let page = hw_out(&["man"]);
    assert!(page.contains(".TH highwater 1"), "{page}");
    for word in ["init", "run", "plan", "completions"] {
        assert!(page.contains(word), "man page lacks {word}");
    }
    let run = hw_out(&["man", "run"]);
    assert!(
        run.contains(".TH highwater\\-run 1") || run.contains(".TH highwater-run 1"),
        "{run}"
    );
    assert!(run.contains("dry\\-run"), "{run}");
    // groff reads it without warnings (-k: UTF-8 input, as man does).
    let o = pipe("groff", &["-k", "-man", "-Tutf8", "-ww", "-z"], &page);
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "groff: {}",
        stderr(&o)
    );

    let dir = Dir::new("man_bad");
    let o = dir.hw(&["man", "nope"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("no command nope"), "{}", stderr(&o));
}
