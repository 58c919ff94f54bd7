//! The `herald` binary as a user runs it: help text, exit statuses, inputs from files,
//! directories and stdin, and error messages that name the file and line. No cluster needed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn herald(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        // No cluster is needed for these commands; make sure none is picked up.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("herald runs");
    if let Some(input) = stdin
        && let Some(mut pipe) = child.stdin.take()
    {
        pipe.write_all(input.as_bytes()).expect("stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("herald exits")
}

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_lists_every_command_and_each_command_documents_its_options() {
    let out = herald(&["--help"], None);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for command in ["migrate", "status", "check", "kubectl herald"] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
    let cases: [(&str, &[&str]); 3] = [
        (
            "migrate",
            &[
                "--from-cluster",
                "--strict",
                "--output",
                "--report",
                "--namespace",
                "--skip-unknown",
                "Exit status",
                "metallb.universe.tf",
            ],
        ),
        (
            "status",
            &["--output", "json", "yaml", "--events", "NAMESPACE/NAME"],
        ),
        (
            "check",
            &[
                "overlapping pools",
                "--load-balancer-class",
                "--ignore-classless",
            ],
        ),
    ];
    for (command, wanted) in cases {
        let out = herald(&[command, "--help"], None);
        assert!(out.status.success(), "{command} --help");
        let help = text(&out.stdout);
        for word in wanted {
            assert!(
                help.contains(word),
                "{command} --help lacks {word}:\n{help}"
            );
        }
    }
}

#[test]
fn migrate_reads_a_directory_and_writes_manifests_and_a_report() {
    let dir = tempdir("dir");
    for name in ["layer2.yaml", "bgp.yaml", "services.yaml"] {
        std::fs::copy(corpus(name), dir.join(name)).expect("copy");
    }
    std::fs::write(dir.join("README.txt"), "not a manifest").expect("write");
    let out = herald(&["migrate", dir.to_str().expect("utf-8")], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let manifests = text(&out.stdout);
    assert!(manifests.contains("kind: IPAddressPool"));
    assert!(manifests.contains("kind: BGPPeer"));
    assert!(manifests.contains("herald.dev/loadBalancerIPs: 192.0.2.130"));
    let report = text(&out.stderr);
    assert!(report.contains("object(s) written"), "{report}");
    assert!(report.contains("action"), "{report}");
}

#[test]
fn strict_fails_on_untranslated_fields_and_names_them() {
    let file = corpus("untranslatable.yaml");
    let file = file.to_str().expect("utf-8");
    let lenient = herald(&["migrate", file], None);
    assert_eq!(lenient.status.code(), Some(0), "{}", text(&lenient.stderr));
    let strict = herald(&["migrate", "--strict", file], None);
    assert_eq!(strict.status.code(), Some(2));
    let report = text(&strict.stderr);
    assert!(
        report.contains(&format!(
            "{file}:12: untranslated BGPPeer metallb-system/frr-only spec.vrf"
        )),
        "{report}"
    );
}

#[test]
fn stdin_is_read_and_bad_input_names_the_file_and_line() {
    let ok = herald(
        &["migrate", "-"],
        Some(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec:\n  addresses: [192.0.2.0/24]\n",
        ),
    );
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("apiVersion: herald.dev/v1alpha1"));

    let bad = herald(
        &["migrate"],
        Some(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec:\n  addresses: [192.0.2.0/33]\n",
        ),
    );
    assert_eq!(bad.status.code(), Some(1));
    let message = text(&bad.stderr);
    assert!(message.contains("<stdin>:5:"), "{message}");
    assert!(message.contains("192.0.2.0/33"), "{message}");
    assert!(text(&bad.stdout).is_empty(), "nothing is written on error");

    let file = corpus("invalid/unknown-kind.yaml");
    let unknown = herald(&["migrate", file.to_str().expect("utf-8")], None);
    assert_eq!(unknown.status.code(), Some(1));
    let message = text(&unknown.stderr);
    assert!(message.contains("unknown-kind.yaml:10:"), "{message}");
    assert!(message.contains("BGPRouter"), "{message}");
}

#[test]
fn output_and_report_files_are_written_when_asked() {
    let dir = tempdir("files");
    let output = dir.join("herald.yaml");
    let report = dir.join("report.txt");
    let out = herald(
        &[
            "migrate",
            "--namespace",
            "lb",
            "-o",
            output.to_str().expect("utf-8"),
            "--report",
            report.to_str().expect("utf-8"),
            corpus("bgp.yaml").to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let written = std::fs::read_to_string(&output).expect("output");
    assert!(written.contains("namespace: lb"));
    assert!(!written.contains("herald-system"));
    let report = std::fs::read_to_string(&report).expect("report");
    assert!(
        report.contains("copy metallb-system/upstream-md5 into lb"),
        "{report}"
    );
}

fn tempdir(hint: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-cli-test-{hint}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
