//! `nft -c` validation of everything the renderer produces: the kernel's own parser and
//! validator accept each full ruleset and each update script. Runs inside a network
//! namespace made by the test (`nft -c` changes nothing, but the update scripts need the old
//! ruleset applied first), deleted afterwards. Needs root and nft; prints SKIPPED otherwise.

#[path = "support/forwarding_fixture.rs"]
mod fixture;

use fixture::ScratchNetns;
use herald_speaker::forwarding::{
    DEFAULT_MASQUERADE_MARK, Ruleset, render_full, render_teardown, render_update,
};

fn skip_without_nft() -> bool {
    if fixture::nft_available() {
        return false;
    }
    eprintln!("SKIPPED: needs root, iproute2 and nft (apt-get install nftables)");
    true
}

fn assert_nft(ns: &ScratchNetns, args: &[&str], script: &str, what: &str) {
    let output = ns.nft_stdin(args, script);
    assert!(
        output.status.success(),
        "nft {} rejected {what}:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_full_ruleset_passes_nft_check() {
    if skip_without_nft() {
        return;
    }
    let ns = ScratchNetns::create("check");
    let cases = [
        ("the empty ruleset", Ruleset::empty(DEFAULT_MASQUERADE_MARK)),
        (
            "the mixed cluster",
            fixture::ruleset_for(&fixture::mixed_model()),
        ),
        (
            "the updated mixed cluster",
            fixture::ruleset_for(&fixture::mixed_model_updated()),
        ),
        (
            "a thousand Services",
            fixture::ruleset_for(&fixture::synthetic_model(1000, 4)),
        ),
    ];
    for (what, ruleset) in &cases {
        assert_nft(&ns, &["-c", "-f", "-"], &render_full(ruleset), what);
    }
    let listed = ns.exec("nft", &["list", "tables"]);
    assert!(
        listed.stdout.is_empty(),
        "nft -c must not create anything, found: {}",
        String::from_utf8_lossy(&listed.stdout)
    );
}

#[test]
fn update_scripts_pass_nft_check_against_the_applied_ruleset_in_both_directions() {
    if skip_without_nft() {
        return;
    }
    let ns = ScratchNetns::create("check-update");
    let before = fixture::ruleset_for(&fixture::mixed_model());
    let after = fixture::ruleset_for(&fixture::mixed_model_updated());
    for (from, to) in [(&before, &after), (&after, &before)] {
        assert_nft(
            &ns,
            &["-f", "-"],
            &render_full(from),
            "the starting ruleset",
        );
        let (script, _) = render_update(from, to).expect("the fixtures differ");
        assert_nft(&ns, &["-c", "-f", "-"], &script, "the update script");
    }
    let empty = Ruleset::empty(DEFAULT_MASQUERADE_MARK);
    let (to_empty, _) = render_update(&before, &empty).expect("differs from empty");
    assert_nft(
        &ns,
        &["-f", "-"],
        &render_full(&before),
        "the mixed ruleset",
    );
    assert_nft(&ns, &["-c", "-f", "-"], &to_empty, "removing every Service");
    assert_nft(&ns, &["-f", "-"], &render_teardown(), "the teardown");
    assert_nft(
        &ns,
        &["-c", "-f", "-"],
        &render_teardown(),
        "a teardown of nothing",
    );
}

#[test]
fn nft_check_does_reject_a_broken_script() {
    if skip_without_nft() {
        return;
    }
    let ns = ScratchNetns::create("check-broken");
    let broken = render_full(&fixture::ruleset_for(&fixture::mixed_model())).replace(
        "dnat ip to 198.18.1.5:8080",
        "dnat ip to 198.18.1.5:notaport",
    );
    let output = ns.nft_stdin(&["-c", "-f", "-"], &broken);
    assert!(
        !output.status.success(),
        "a broken script must fail the check"
    );
}
