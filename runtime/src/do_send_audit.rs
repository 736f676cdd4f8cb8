//! `do_send` ignores mailbox capacity, so it must never carry elements (only
//! credit bounds memory). Every call in the runtime's source is listed here with
//! the message it sends; a new one fails this test until it is checked and added.

/// (file under `src/`, the call) — each sends a message that holds no
/// elements: a `Control` (shutdown, abort, restart), a config or a policy.
const ALLOWED: &[(&str, &str)] = &[
    (
        "pipeline/flow/reconfig.rs",
        "recipient.do_send(Reconfig { config, reply })",
    ),
    (
        "pipeline/flow/reconfig.rs",
        "recipient.do_send(SetPolicy { policy, reply })",
    ),
    (
        "pipeline/policies.rs",
        "setter.do_send(SetPolicy { policy, reply: tx })",
    ),
    (
        "pipeline/shared.rs",
        "controls[index].do_send(Control::Restart)",
    ),
    // `control: &ControlTx`: only a `Control` fits.
    ("pipeline/shared.rs", "control.do_send(msg)"),
    // A checkpoint barrier injected at one stage, or a commit: a `Control`.
    ("pipeline/shared.rs", "controls[stage].do_send(msg)"),
    // `ControlTx::do_send` takes a `Control` and sends it as is, or tagged with
    // the fused member it is for (`MemberControl`): no elements either way.
    (
        "stage/fused.rs",
        "pub(crate) fn do_send(&self, control: Control)",
    ),
    (
        "stage/fused.rs",
        "ControlTx::Actor(r) => r.do_send(control)",
    ),
    (
        "stage/fused.rs",
        "ControlTx::Member(r, index) => r.do_send(MemberControl {",
    ),
    // `PolicyTx::do_send`: a `SetPolicy`, as is or tagged with its fused member.
    (
        "stage/actor/reconfig.rs",
        "pub(crate) fn do_send(&self, msg: SetPolicy)",
    ),
    (
        "stage/actor/reconfig.rs",
        "PolicyTx::Actor(r) => r.do_send(msg)",
    ),
    (
        "stage/actor/reconfig.rs",
        "PolicyTx::Member(r, index) => r.do_send(MemberSetPolicy {",
    ),
];

fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn do_send_carries_no_elements() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let needle = concat!("do_", "send(");
    let mut found = Vec::new();
    for file in files {
        let name = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if name == "do_send_audit.rs" {
            continue; // this file names the calls it allows
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines() {
            let code = line.trim();
            // Comments, and the string literals of `ALLOWED` above.
            if code.starts_with("//") || code.starts_with('"') || !code.contains(needle) {
                continue;
            }
            let known = ALLOWED
                .iter()
                .any(|(f, call)| *f == name && code.contains(call));
            assert!(known, "unreviewed do_send in {name}: {code}");
            found.push(name.clone());
        }
    }
    assert_eq!(
        found.len(),
        ALLOWED.len(),
        "a listed call is gone: {found:?}"
    );
}
