//! Golden-file tests of the rendered nftables text. The files under `tests/golden/` are the
//! reviewed output; `HERALD_UPDATE_GOLDEN=1 cargo test -p herald-speaker --test
//! forwarding_golden` rewrites them after an intended change (review the diff).

#[path = "support/forwarding_fixture.rs"]
mod fixture;

use std::path::PathBuf;

use herald_speaker::forwarding::{DEFAULT_MASQUERADE_MARK, Ruleset, render_full, render_update};

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Compares `actual` with the golden file, or rewrites the file when asked to.
fn assert_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("HERALD_UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run with HERALD_UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let first_difference = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the rendering at line {}:\n  golden: {:?}\n  actual: {:?}\n\
             (HERALD_UPDATE_GOLDEN=1 rewrites it after an intended change)",
            path.display(),
            first_difference + 1,
            expected.lines().nth(first_difference),
            actual.lines().nth(first_difference),
        );
    }
}

#[test]
fn an_empty_ruleset_renders_the_bare_table_with_its_hooks() {
    assert_golden(
        "forwarding_full_empty.nft",
        &render_full(&Ruleset::empty(DEFAULT_MASQUERADE_MARK)),
    );
}

#[test]
fn the_mixed_cluster_renders_as_reviewed() {
    assert_golden(
        "forwarding_full_mixed.nft",
        &render_full(&fixture::ruleset_for(&fixture::mixed_model())),
    );
}

#[test]
fn the_mixed_cluster_update_renders_as_reviewed() {
    let old = fixture::ruleset_for(&fixture::mixed_model());
    let new = fixture::ruleset_for(&fixture::mixed_model_updated());
    let (script, _) = render_update(&old, &new).expect("the fixtures differ");
    assert_golden("forwarding_update_mixed.nft", &script);
}

#[test]
fn rendering_is_deterministic() {
    let a = render_full(&fixture::ruleset_for(&fixture::mixed_model()));
    let b = render_full(&fixture::ruleset_for(&fixture::mixed_model()));
    assert_eq!(a, b);
}
