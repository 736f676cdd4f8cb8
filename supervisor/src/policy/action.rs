//! [`Action`] and [`ClassActions`]: what happens to an element whose processing failed.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::ErrorClass;

/// What the supervisor does with an element whose processing failed.
///
/// The action is chosen per [`ErrorClass`] by [`ClassActions`]. The two actions that
/// try the element again, [`Retry`](Action::Retry) and [`Restart`](Action::Restart),
/// are bounded by the policy's `max_attempts`; once an element has used them up the
/// [`ClassActions::on_exhausted`] action applies instead.
///
/// In TOML an action is written in snake case: `"retry"`, `"dead_letter"`, `"skip"`,
/// `"restart"`, `"escalate"`.
///
/// # Examples
///
/// ```
/// use weir_supervisor::policy::Action;
///
/// assert!(Action::Retry.tries_again());
/// assert!(!Action::DeadLetter.tries_again());
/// assert_eq!(Action::DeadLetter.to_string(), "dead_letter");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Try the same element again on the same stage instance after the policy's
    /// backoff delay. The stage keeps its state.
    Retry,
    /// Send the element, with its error, stage, attempts and time, to the dead-letter
    /// queue and go on with the next element.
    DeadLetter,
    /// Drop the element and go on; the drop is counted, never silent.
    Skip,
    /// Replace the stage with a fresh instance from its factory (after the policy's
    /// restart backoff and within its restart intensity); the new instance processes
    /// the failed element again, then the rest of the mailbox.
    Restart,
    /// Give up: fail the whole pipeline with a report naming the stage.
    Escalate,
}

impl Action {
    /// True for the actions that process the element again ([`Retry`](Action::Retry)
    /// and [`Restart`](Action::Restart)); they are bounded by `max_attempts` and are
    /// not allowed as the [`on_exhausted`](ClassActions::on_exhausted) action.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_supervisor::policy::Action;
    ///
    /// assert!(Action::Restart.tries_again());
    /// assert!(!Action::Skip.tries_again());
    /// ```
    pub fn tries_again(self) -> bool {
        matches!(self, Action::Retry | Action::Restart)
    }

    /// The snake-case name used in TOML files and messages.
    fn name(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::DeadLetter => "dead_letter",
            Action::Skip => "skip",
            Action::Restart => "restart",
            Action::Escalate => "escalate",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The [`Action`] for each [`ErrorClass`], plus the action for an element that has
/// used up its attempts.
///
/// The defaults:
///
/// | class                | action        | why                                              |
/// |----------------------|---------------|--------------------------------------------------|
/// | `panic`              | `restart`     | the operator's state may be corrupt              |
/// | `transient`          | `retry`       | the same element may well succeed next time      |
/// | `timeout`            | `retry`       | usually a slow dependency, i.e. transient        |
/// | `resource_exhausted` | `retry`       | with backoff, gives the resource time to recover |
/// | `permanent`          | `dead_letter` | trying again cannot help; keep the element       |
/// | *exhausted*          | `dead_letter` | nothing is lost and the pipeline goes on         |
///
/// # Examples
///
/// ```
/// use weir_supervisor::ErrorClass;
/// use weir_supervisor::policy::{Action, ClassActions};
///
/// let actions = ClassActions::default()
///     .set(ErrorClass::Permanent, Action::Skip)
///     .on_exhausted(Action::Escalate);
/// assert_eq!(actions.action(ErrorClass::Permanent), Action::Skip);
/// assert_eq!(actions.action(ErrorClass::Panic), Action::Restart);
///
/// // The third failure of an element with max_attempts = 3 gives up.
/// assert_eq!(actions.decide(ErrorClass::Transient, 2, 3), Action::Retry);
/// assert_eq!(actions.decide(ErrorClass::Transient, 3, 3), Action::Escalate);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct ClassActions {
    /// For [`ErrorClass::Panic`].
    pub panic: Action,
    /// For [`ErrorClass::Transient`].
    pub transient: Action,
    /// For [`ErrorClass::Permanent`].
    pub permanent: Action,
    /// For [`ErrorClass::Timeout`].
    pub timeout: Action,
    /// For [`ErrorClass::ResourceExhausted`].
    pub resource_exhausted: Action,
    /// For an element whose `max_attempts` are used up by retries and restarts:
    /// [`DeadLetter`](Action::DeadLetter), [`Skip`](Action::Skip) or
    /// [`Escalate`](Action::Escalate) ([`validate`](Self::validate) rejects the others).
    pub on_exhausted: Action,
}

impl Default for ClassActions {
    fn default() -> Self {
        ClassActions {
            panic: Action::Restart,
            transient: Action::Retry,
            permanent: Action::DeadLetter,
            timeout: Action::Retry,
            resource_exhausted: Action::Retry,
            on_exhausted: Action::DeadLetter,
        }
    }
}

impl ClassActions {
    /// The action for failures of `class`.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_supervisor::ErrorClass;
    /// use weir_supervisor::policy::{Action, ClassActions};
    ///
    /// assert_eq!(ClassActions::default().action(ErrorClass::Timeout), Action::Retry);
    /// ```
    pub fn action(&self, class: ErrorClass) -> Action {
        match class {
            ErrorClass::Panic => self.panic,
            ErrorClass::Transient => self.transient,
            ErrorClass::Permanent => self.permanent,
            ErrorClass::Timeout => self.timeout,
            ErrorClass::ResourceExhausted => self.resource_exhausted,
        }
    }

    /// Sets the action for failures of `class`.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_supervisor::ErrorClass;
    /// use weir_supervisor::policy::{Action, ClassActions};
    ///
    /// let actions = ClassActions::default().set(ErrorClass::Panic, Action::Escalate);
    /// assert_eq!(actions.panic, Action::Escalate);
    /// ```
    pub fn set(mut self, class: ErrorClass, action: Action) -> Self {
        let slot = match class {
            ErrorClass::Panic => &mut self.panic,
            ErrorClass::Transient => &mut self.transient,
            ErrorClass::Permanent => &mut self.permanent,
            ErrorClass::Timeout => &mut self.timeout,
            ErrorClass::ResourceExhausted => &mut self.resource_exhausted,
        };
        *slot = action;
        self
    }

    /// Sets the action for an element that has used up its attempts.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_supervisor::policy::{Action, ClassActions};
    ///
    /// let actions = ClassActions::default().on_exhausted(Action::Skip);
    /// assert_eq!(actions.on_exhausted, Action::Skip);
    /// ```
    pub fn on_exhausted(mut self, action: Action) -> Self {
        self.on_exhausted = action;
        self
    }

    /// The action for the `attempt`-th failure of one element, where the element may
    /// be tried `max_attempts` times in all.
    ///
    /// `attempt` counts the failed tries of this element so far, this one included
    /// (1 for the first failure), across retries and restarts alike. A
    /// [`Retry`](Action::Retry) or [`Restart`](Action::Restart) at
    /// `attempt >= max_attempts` becomes the [`on_exhausted`](Self::on_exhausted)
    /// action, so an element is processed at most `max_attempts` times. If
    /// `on_exhausted` itself tries again (which [`validate`](Self::validate) rejects),
    /// [`DeadLetter`](Action::DeadLetter) is used so that nothing loops or is lost.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_supervisor::ErrorClass;
    /// use weir_supervisor::policy::{Action, ClassActions};
    ///
    /// let actions = ClassActions::default();
    /// assert_eq!(actions.decide(ErrorClass::Panic, 1, 3), Action::Restart);
    /// assert_eq!(actions.decide(ErrorClass::Panic, 3, 3), Action::DeadLetter);
    /// assert_eq!(actions.decide(ErrorClass::Permanent, 1, 3), Action::DeadLetter);
    /// ```
    pub fn decide(&self, class: ErrorClass, attempt: u32, max_attempts: u32) -> Action {
        let action = self.action(class);
        if action.tries_again() && attempt >= max_attempts {
            self.exhausted()
        } else {
            action
        }
    }

    /// The give-up action, with a retrying one replaced by
    /// [`DeadLetter`](Action::DeadLetter).
    pub(crate) fn exhausted(&self) -> Action {
        if self.on_exhausted.tries_again() {
            Action::DeadLetter
        } else {
            self.on_exhausted
        }
    }

    /// Checks that [`on_exhausted`](Self::on_exhausted) gives up.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] with key `on_exhausted` when it is
    /// [`Retry`](Action::Retry) or [`Restart`](Action::Restart).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_supervisor::policy::{Action, ClassActions};
    ///
    /// assert!(ClassActions::default().validate().is_ok());
    /// let err = ClassActions::default().on_exhausted(Action::Retry).validate().unwrap_err();
    /// assert_eq!(err.key(), Some("on_exhausted"));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.on_exhausted.tries_again() {
            return Err(ConfigError::invalid(
                "on_exhausted",
                format!(
                    "must be dead_letter, skip or escalate, not {} (the element has no \
                     attempts left)",
                    self.on_exhausted
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASSES: [ErrorClass; 5] = [
        ErrorClass::Panic,
        ErrorClass::Transient,
        ErrorClass::Permanent,
        ErrorClass::Timeout,
        ErrorClass::ResourceExhausted,
    ];
    const ACTIONS: [Action; 5] = [
        Action::Retry,
        Action::DeadLetter,
        Action::Skip,
        Action::Restart,
        Action::Escalate,
    ];

    #[test]
    fn defaults_are_as_documented() {
        let actions = ClassActions::default();
        assert_eq!(actions.action(ErrorClass::Panic), Action::Restart);
        assert_eq!(actions.action(ErrorClass::Transient), Action::Retry);
        assert_eq!(actions.action(ErrorClass::Permanent), Action::DeadLetter);
        assert_eq!(actions.action(ErrorClass::Timeout), Action::Retry);
        assert_eq!(actions.action(ErrorClass::ResourceExhausted), Action::Retry);
        assert_eq!(actions.on_exhausted, Action::DeadLetter);
        assert!(actions.validate().is_ok());
    }

    #[test]
    fn set_changes_only_its_class() {
        for class in CLASSES {
            let actions = ClassActions::default().set(class, Action::Escalate);
            for other in CLASSES {
                let expected = if other == class {
                    Action::Escalate
                } else {
                    ClassActions::default().action(other)
                };
                assert_eq!(actions.action(other), expected, "{class:?} / {other:?}");
            }
        }
    }

    #[test]
    fn an_element_is_tried_at_most_max_attempts_times() {
        let actions = ClassActions::default();
        for max_attempts in 1..6 {
            let tries = (1..)
                .take_while(|&attempt| {
                    actions
                        .decide(ErrorClass::Transient, attempt, max_attempts)
                        .tries_again()
                })
                .count()
                + 1;
            assert_eq!(tries, max_attempts as usize);
        }
        // A zero limit behaves like one: the first failure gives up.
        assert_eq!(actions.decide(ErrorClass::Panic, 1, 0), Action::DeadLetter);
    }

    #[test]
    fn giving_up_actions_are_not_bounded_by_attempts() {
        for action in [Action::DeadLetter, Action::Skip, Action::Escalate] {
            let actions = ClassActions::default().set(ErrorClass::Transient, action);
            assert_eq!(actions.decide(ErrorClass::Transient, 1, 5), action);
            assert_eq!(actions.decide(ErrorClass::Transient, 9, 5), action);
        }
    }

    #[test]
    fn on_exhausted_must_give_up() {
        for action in ACTIONS {
            let actions = ClassActions::default().on_exhausted(action);
            assert_eq!(
                actions.validate().is_ok(),
                !action.tries_again(),
                "{action:?}"
            );
            let err_text = actions.validate().err().map(|e| e.to_string());
            if action.tries_again() {
                assert!(
                    err_text
                        .unwrap()
                        .starts_with("on_exhausted: must be dead_letter")
                );
                // Even unvalidated, a retrying give-up action never loops.
                assert_eq!(
                    actions.decide(ErrorClass::Transient, 3, 3),
                    Action::DeadLetter
                );
            }
        }
    }

    #[test]
    fn names_round_trip_through_serde() {
        #[derive(Deserialize)]
        struct Doc {
            a: Action,
        }
        for action in ACTIONS {
            let doc: Doc = toml::from_str(&format!("a = \"{action}\"")).unwrap();
            assert_eq!(doc.a, action);
        }
    }
}
