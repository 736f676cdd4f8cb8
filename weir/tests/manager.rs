//! `PipelineManager`: many pipelines by name, stats and health for all, stop one,
//! and a graceful shutdown of all on SIGTERM reporting what each drained.

use std::time::Duration;

use weir::manager::{ManagerError, PipelineManager};
use weir::prelude::*;

fn endless(name: &str) -> Runnable<()> {
    Pipeline::from_iter(0_u64..)
        .map(|x| x + 1)
        .name(format!("{name}-map"))
        .for_each(|_| std::thread::sleep(Duration::from_micros(20)))
}

#[test]
fn many_pipelines_by_name_with_stats_health_and_stop() {
    let rt = Runtime::builder().arbiters(2).build().unwrap();
    let manager = PipelineManager::new();
    manager.start("beta", endless("beta"), &rt).unwrap();
    manager.start("alpha", endless("alpha"), &rt).unwrap();
    let (ingress, flow) = Pipeline::ingress::<u64>(8);
    manager.start("fed", flow.for_each(|_| {}), &rt).unwrap();
    assert_eq!(manager.names(), ["alpha", "beta", "fed"]);

    let err = manager.start("alpha", endless("again"), &rt).unwrap_err();
    assert!(matches!(err, ManagerError::NameTaken { .. }), "{err}");
    assert!(err.to_string().contains("`alpha`"), "{err}");

    let stats = manager.stats();
    assert_eq!(
        stats.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["alpha", "beta", "fed"]
    );
    assert!(manager.health().values().all(|h| h.is_healthy()));

    let ended = manager.stop("beta", Duration::from_secs(2)).unwrap();
    let report = ended.report.expect("a report");
    assert!(
        matches!(report.outcome, Outcome::Drained { .. }),
        "{:?}",
        report.outcome
    );
    report.check_conservation().unwrap();
    assert!(manager.remove("beta").is_some());
    assert!(manager.remove("alpha").is_none(), "still running");
    assert_eq!(manager.names(), ["alpha", "fed"]);
    assert!(matches!(
        manager.stop("nope", Duration::from_secs(1)),
        Err(ManagerError::Unknown { .. })
    ));

    for x in 0..5 {
        ingress.try_send(x).unwrap();
    }
    let summary = manager.shutdown_all(Duration::from_secs(2));
    for (name, ended) in &summary.pipelines {
        let ended = ended
            .as_ref()
            .unwrap_or_else(|| panic!("{name} did not end"));
        assert!(ended.error.is_none(), "{name}: {:?}", ended.error);
        ended.report.as_ref().unwrap().check_conservation().unwrap();
    }
    let fed = summary.pipelines["fed"].as_ref().unwrap();
    assert_eq!(fed.report.as_ref().unwrap().delivered(), 5);
    let text = summary.to_string();
    assert!(text.contains("alpha: Drained"), "{text}");
}

#[test]
fn sigterm_drains_every_pipeline_and_reports_it() {
    let rt = Runtime::builder().arbiters(2).build().unwrap();
    let manager = PipelineManager::new();
    manager.start("one", endless("one"), &rt).unwrap();
    manager.start("two", endless("two"), &rt).unwrap();
    let pid = std::process::id().to_string();
    let killer = std::thread::spawn(move || {
        // Long enough for the handler to be installed first.
        std::thread::sleep(Duration::from_millis(500));
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("the kill command");
        assert!(status.success());
    });
    let summary = manager.shutdown_on_signal(Duration::from_secs(2)).unwrap();
    killer.join().unwrap();
    assert_eq!(summary.pipelines.len(), 2);
    for (name, ended) in &summary.pipelines {
        let ended = ended
            .as_ref()
            .unwrap_or_else(|| panic!("{name} did not end"));
        assert!(ended.drained().is_some(), "{name}: {ended:?}");
        ended.report.as_ref().unwrap().check_conservation().unwrap();
    }
}
