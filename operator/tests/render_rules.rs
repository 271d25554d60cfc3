//! `render-rules`: `--help` is help, not a file name; a file, `-` and standard input render the
//! same rules; without `--sloth-labels` the rules are those rendered before the option existed.

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
    assert!(
        help.contains("Usage: render-rules [OPTIONS] [FILE]"),
        "{help}"
    );
    assert!(help.contains("--sloth-labels"), "{help}");
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

/// The example's rules as render-rules printed them before `--sloth-labels` existed.
const BEFORE_SLOTH: &str = include_str!("data/pipeline-cassandra.rules.yaml");

#[test]
fn by_default_the_rules_are_byte_identical_to_those_before_the_sloth_option() {
    let out = render(&[EXAMPLE], "");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout) == BEFORE_SLOTH);
}

#[test]
fn sloth_labels_come_from_the_flag_or_the_spec() {
    let flagged = render(&["--sloth-labels", EXAMPLE], "");
    assert!(flagged.status.success(), "{flagged:?}");
    let text = String::from_utf8_lossy(&flagged.stdout).into_owned();
    // No namespace in the file: `default`, as `kubectl apply` would place it.
    assert!(text.contains("sloth_service: default/catalog\n"), "{text}");
    assert!(text.contains("- record: sloth_slo_info\n"));
    assert!(text.contains("sloth_window: 30d\n"));

    let yaml = std::fs::read_to_string(EXAMPLE).expect("the example pipeline");
    let asked = yaml.replace(
        "\nspec:\n",
        "\nspec:\n  prometheus:\n    url: http://prometheus:9090\n    slothLabels: true\n",
    );
    assert_ne!(asked, yaml, "the example has a spec");
    assert_eq!(render(&[], &asked).stdout, flagged.stdout);
}
