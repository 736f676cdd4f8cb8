//! [`RestartStrategy`] (which stages restart together) and [`RestartType`] (whether a
//! stage restarts at all).

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Which stages of a pipeline restart when one of them is restarted.
///
/// Stages of a linear pipeline are indexed from the source (0) to the sink
/// (`stages - 1`); "after" means downstream. The names follow Erlang/OTP. In TOML:
/// `strategy = "one_for_one"`, `"one_for_all"` or `"rest_for_one"`.
///
/// # Examples
///
/// ```
/// use weir_supervisor::policy::RestartStrategy;
///
/// // source=0, parse=1, enrich=2, sink=3; `parse` failed.
/// assert_eq!(RestartStrategy::OneForOne.affected(1, 4), 1..2);
/// assert_eq!(RestartStrategy::OneForAll.affected(1, 4), 0..4);
/// assert_eq!(RestartStrategy::RestForOne.affected(1, 4), 1..4);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartStrategy {
    /// Only the failed stage restarts. Right when stages hold independent state; the
    /// default.
    #[default]
    OneForOne,
    /// Every stage restarts. Right when the stages' states only make sense together
    /// (a stage caches what an upstream stage told it).
    OneForAll,
    /// The failed stage and every stage downstream of it restart. Right when a stage's
    /// state depends on what upstream stages sent it, but not the other way round.
    RestForOne,
}

impl RestartStrategy {
    /// The indices of the stages that restart when stage `failed` of a pipeline of
    /// `stages` stages is restarted.
    ///
    /// The range is empty when `failed` is not a stage index (`failed >= stages`).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_supervisor::policy::RestartStrategy;
    ///
    /// assert_eq!(RestartStrategy::RestForOne.affected(3, 4), 3..4);
    /// assert!(RestartStrategy::OneForAll.affected(4, 4).is_empty());
    /// ```
    pub fn affected(&self, failed: usize, stages: usize) -> Range<usize> {
        if failed >= stages {
            return stages..stages;
        }
        match self {
            RestartStrategy::OneForOne => failed..failed + 1,
            RestartStrategy::OneForAll => 0..stages,
            RestartStrategy::RestForOne => failed..stages,
        }
    }
}

/// Whether a failed stage is restarted, after Erlang/OTP's child restart types,
/// defined for stream stages.
///
/// A stage of a stream never restarts after it completed normally (its input
/// ended and it finished its work): that stream is over. The types differ in which
/// failures restart it:
///
/// | type | action `restart` | action `escalate` (or `on_exhausted = "escalate"`) |
/// |---|---|---|
/// | `permanent` | restarts | **restarts** (and retries the element), within the restart intensity |
/// | `transient` (default) | restarts | fails the pipeline |
/// | `temporary` | the element gets `on_exhausted`; no restart | fails the pipeline |
///
/// Past the restart intensity every type escalates. In TOML: `restart =
/// "permanent"`, `"transient"` or `"temporary"`.
///
/// # Examples
///
/// ```
/// use weir_supervisor::policy::RestartType;
///
/// assert!(RestartType::Permanent.restarts_instead_of_escalating());
/// assert!(!RestartType::Transient.restarts_instead_of_escalating());
/// assert!(RestartType::Transient.restarts_after_failure());
/// assert!(!RestartType::Temporary.restarts_after_failure());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartType {
    /// Kept alive: a failure the policy would escalate restarts the stage (fresh
    /// from its factory) and retries the element instead, for as long as the
    /// restart intensity allows. For stages that must run as long as the pipeline
    /// does, whatever their elements do.
    Permanent,
    /// Restarted after a failure whose action is [`Restart`](super::Action::Restart);
    /// a failure the policy escalates fails the pipeline. The default.
    #[default]
    Transient,
    /// Never restarted. A failure whose action is
    /// [`Restart`](super::Action::Restart) takes the give-up path instead: the
    /// element gets the [`on_exhausted`](super::ClassActions::on_exhausted) action
    /// and the stage keeps its current instance.
    Temporary,
}

impl RestartType {
    /// Whether a failure whose action is [`Restart`](super::Action::Restart)
    /// restarts the stage (`permanent`, `transient`).
    pub fn restarts_after_failure(&self) -> bool {
        !matches!(self, RestartType::Temporary)
    }

    /// Whether a failure the policy would escalate restarts the stage instead
    /// (`permanent`), within the restart intensity.
    pub fn restarts_instead_of_escalating(&self) -> bool {
        matches!(self, RestartType::Permanent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRATEGIES: [RestartStrategy; 3] = [
        RestartStrategy::OneForOne,
        RestartStrategy::OneForAll,
        RestartStrategy::RestForOne,
    ];

    #[test]
    fn affected_ranges_for_every_stage_of_a_four_stage_pipeline() {
        for failed in 0..4 {
            assert_eq!(
                RestartStrategy::OneForOne.affected(failed, 4),
                failed..failed + 1
            );
            assert_eq!(RestartStrategy::OneForAll.affected(failed, 4), 0..4);
            assert_eq!(RestartStrategy::RestForOne.affected(failed, 4), failed..4);
        }
    }

    #[test]
    fn affected_always_contains_the_failed_stage_and_stays_in_bounds() {
        for stages in 0..8 {
            for failed in 0..10 {
                for strategy in STRATEGIES {
                    let range = strategy.affected(failed, stages);
                    assert!(range.end <= stages, "{strategy:?} {failed}/{stages}");
                    assert_eq!(range.contains(&failed), failed < stages);
                }
            }
        }
    }

    #[test]
    fn single_stage_pipeline_restarts_that_stage_whatever_the_strategy() {
        for strategy in STRATEGIES {
            assert_eq!(strategy.affected(0, 1), 0..1);
        }
    }

    #[test]
    fn restart_types_differ_in_which_failures_restart() {
        let table = [
            (RestartType::Permanent, true, true),
            (RestartType::Transient, true, false),
            (RestartType::Temporary, false, false),
        ];
        for (kind, after_failure, instead_of_escalating) in table {
            assert_eq!(kind.restarts_after_failure(), after_failure, "{kind:?}");
            assert_eq!(
                kind.restarts_instead_of_escalating(),
                instead_of_escalating,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn defaults_and_toml_names() {
        assert_eq!(RestartStrategy::default(), RestartStrategy::OneForOne);
        assert_eq!(RestartType::default(), RestartType::Transient);
        #[derive(Deserialize)]
        struct Doc {
            strategy: RestartStrategy,
            restart: RestartType,
        }
        let doc: Doc =
            toml::from_str("strategy = \"rest_for_one\"\nrestart = \"temporary\"").unwrap();
        assert_eq!(doc.strategy, RestartStrategy::RestForOne);
        assert_eq!(doc.restart, RestartType::Temporary);
    }
}
