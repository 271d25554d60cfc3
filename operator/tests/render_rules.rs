//! `render-rules`: `--help` is help, not a file name; a file, `-` and standard input render the
//! same rules.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_render-rules");
const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/pipeline-cassandra.yaml"
);

fn render(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("render-rules starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("render-rules reads stdin");
    child.wait_with_output().expect("render-rules ends")
}

#[test]
fn help_is_help() {
    let out = render(&["--help"], "");
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Usage: render-rules [FILE]"), "{help}");
}

#[test]
fn a_file_a_dash_and_stdin_render_the_same_rules() {
    let yaml = std::fs::read_to_string(EXAMPLE).expect("the example pipeline");
    let from_file = render(&[EXAMPLE], "");
    assert!(from_file.status.success(), "{from_file:?}");
    assert!(String::from_utf8_lossy(&from_file.stdout).starts_with("groups:\n"));
    assert_eq!(render(&["-"], &yaml).stdout, from_file.stdout);
    assert_eq!(render(&[], &yaml).stdout, from_file.stdout);
}

#[test]
fn a_missing_file_fails() {
    assert!(!render(&["/nonexistent/pipeline.yaml"], "").status.success());
}
