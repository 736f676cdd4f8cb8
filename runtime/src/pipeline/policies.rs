//! Applying a policy file ([`PolicyConfig`]) to a whole pipeline: every stage and
//! junction gets `[stages.<name>]` if the file has it, `[default]` if not; names
//! the pipeline does not have are errors, with the nearest name as a suggestion.
//!
//! The file decides the policy; the code decides where dead letters go (and the
//! jitter seed). A stage whose policy from the file dead-letters but that has no
//! dead-letter queue is a build error naming it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::oneshot;
use weir_supervisor::policy::{PolicyConfig, StallAction, SupervisionPolicy};

use super::node::PolicyFit;
use super::parts::Parts;
use super::shared::PipelineShared;
use crate::error::BuildError;
use crate::reconfig::{Applied, ConfigHandle, ReconfigError, Reply};
use crate::stage::actor::reconfig::{PolicyTx, SetPolicy};
use crate::supervision::{check_policy, policy_may_drop};

/// What the file gave each node: the stall timeout (for every node), and for a
/// supervised stage how it applies a policy at run time.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodePolicy {
    /// The stall timeout from the file (`None`: the file sets none).
    pub(crate) stall_timeout: Option<Duration>,
    /// The stall action from the file.
    pub(crate) on_stall: StallAction,
    /// What the stage was built with, if it is supervised.
    pub(crate) supervised: Option<Supervised>,
}

/// What a supervised stage was built with, which a policy reloaded while it runs
/// must fit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Supervised {
    /// It has a dead-letter queue.
    pub(crate) dead_letters: bool,
    /// Its operator handles its elements' failures itself (an async one).
    pub(crate) elementwise: bool,
    /// Its policy could drop elements when the graph was validated.
    pub(crate) may_drop: bool,
}

/// A node's name and the pool it belongs to, if any.
#[derive(Debug, Clone)]
pub(crate) struct NodeName {
    pub(crate) name: String,
    pub(crate) group: Option<String>,
}

/// The table that gives a node its policy (its own, its pool's, or `default`) and
/// the policy.
fn lookup(config: &PolicyConfig, node: &NodeName) -> (String, SupervisionPolicy) {
    let has = |name: &str| config.stage_names().any(|n| n == name);
    let key = if has(&node.name) {
        Some(node.name.as_str())
    } else {
        node.group.as_deref().filter(|g| has(g))
    };
    match key {
        Some(key) => (format!("stages.{key}"), config.for_stage(key)),
        None => ("default".to_owned(), config.default_policy().clone()),
    }
}

/// Whether the file has a table with the node's own name: only then is a policy
/// that cannot apply to it an error (a pool's table is meant for its replicas, not
/// for its dispatch and collect junctions).
fn own_table(config: &PolicyConfig, node: &NodeName) -> bool {
    config.stage_names().any(|n| n == node.name)
}

/// Whether `policy` says more than the stall settings beyond `default`: how failed
/// elements are handled.
fn handles_elements_differently(policy: &SupervisionPolicy, default: &SupervisionPolicy) -> bool {
    let mut a = policy.clone();
    let mut b = default.clone();
    a.stall_timeout = None;
    b.stall_timeout = None;
    a != b
}

/// Checks the names in `config` against the pipeline's stages and pools.
pub(crate) fn check_names(config: &PolicyConfig, nodes: &[NodeName]) -> Result<(), BuildError> {
    let known = || {
        nodes
            .iter()
            .flat_map(|n| std::iter::once(n.name.as_str()).chain(n.group.as_deref()))
    };
    for name in config.stage_names() {
        if !known().any(|n| n == name) {
            return Err(BuildError::UnknownPolicyStage {
                name: name.to_owned(),
                suggestion: nearest(name, known()),
            });
        }
    }
    Ok(())
}

/// Applies `config` to every node of `parts`; returns what each node got.
pub(crate) fn apply(
    parts: &mut Parts,
    config: &PolicyConfig,
) -> Result<Vec<NodePolicy>, BuildError> {
    let names = parts.node_names();
    check_names(config, &names)?;
    let mut applied = Vec::with_capacity(names.len());
    for (index, node_name) in names.iter().enumerate() {
        let name = &node_name.name;
        let (table, policy) = lookup(config, node_name);
        let named = own_table(config, node_name);
        let mismatch = |message: String| BuildError::PolicyMismatch {
            stage: name.clone(),
            table: table.clone(),
            message,
        };
        let differs = named && handles_elements_differently(&policy, config.default_policy());
        let meta = parts.meta(index);
        let source = meta.inputs == 0 && !meta.junction;
        let mut node = NodePolicy {
            stall_timeout: policy.stall_timeout,
            on_stall: policy.on_stall,
            supervised: None,
        };
        if source {
            if differs {
                return Err(mismatch(unsupervised(
                    "a source has no input element to retry",
                )));
            }
            applied.push(node);
            continue;
        }
        match parts.apply_policy(index, &policy) {
            PolicyFit::Supervised {
                elementwise,
                dead_letters,
            } => {
                node.supervised = Some(Supervised {
                    dead_letters,
                    elementwise,
                    may_drop: parts.may_drop(index),
                });
            }
            PolicyFit::Unsupervisable(reason) => {
                if differs {
                    let reason = reason.unwrap_or_else(|| {
                        "a junction cannot retry, dead-letter or skip one element".into()
                    });
                    return Err(mismatch(unsupervised(&reason)));
                }
            }
            PolicyFit::NoCopies => {
                return Err(mismatch(
                    "supervises the stage, but its elements were not declared Clone (a \
                     retry or a dead letter needs a copy): call Flow::cloneable before it"
                        .into(),
                ));
            }
            PolicyFit::Invalid(message) => return Err(mismatch(message)),
        }
        applied.push(node);
    }
    Ok(applied)
}

/// Why a `[stages.<name>]` table cannot apply to a stage that is not supervised.
fn unsupervised(reason: &str) -> String {
    format!(
        "sets how failed elements are handled, but {reason}; only stall_timeout_ms applies to it"
    )
}

/// Re-applies a policy file to a running pipeline (a
/// [`ConfigHandle<PolicyConfig>`] bound with `Runnable::policies_handle`): the
/// same validation as at build time, then the strategy, the stall timeouts and
/// every supervised stage's policy.
pub(crate) struct Reloader {
    pipeline: Weak<PipelineShared>,
    names: Vec<NodeName>,
    nodes: Vec<NodePolicy>,
    setters: Vec<Option<PolicyTx>>,
    generation: AtomicU64,
}

impl Reloader {
    /// Binds `handle` to the pipeline.
    pub(crate) fn bind(
        handle: &ConfigHandle<PolicyConfig>,
        pipeline: &Arc<PipelineShared>,
        names: Vec<NodeName>,
        nodes: Vec<NodePolicy>,
        setters: Vec<Option<PolicyTx>>,
    ) {
        let reloader = Arc::new(Reloader {
            pipeline: Arc::downgrade(pipeline),
            names,
            nodes,
            setters,
            generation: AtomicU64::new(0),
        });
        let check = Arc::clone(&reloader);
        handle.bind_checked(
            pipeline.name.clone(),
            Box::new(move |config, reply| reloader.apply(config, reply)),
            Arc::new(move |config: &PolicyConfig| check.check(config)),
        );
    }

    /// Whether `config` fits the running pipeline, as at build time.
    fn check(&self, config: &PolicyConfig) -> Result<(), String> {
        check_names(config, &self.names).map_err(|e| e.to_string())?;
        for (node_name, node) in self.names.iter().zip(&self.nodes) {
            let name = &node_name.name;
            let (table, policy) = lookup(config, node_name);
            let fail = |message: String| format!("stage `{name}`: [{table}] {message}");
            match node.supervised {
                Some(built) => {
                    check_policy(&policy, built.elementwise, built.dead_letters).map_err(fail)?;
                    if policy_may_drop(&policy) && !built.may_drop {
                        return Err(fail(
                            "can drop elements (dead letters, skip), but the stage was built \
                             with a policy that cannot: the graph was validated without drops"
                                .into(),
                        ));
                    }
                }
                None => {
                    if own_table(config, node_name)
                        && handles_elements_differently(&policy, config.default_policy())
                    {
                        return Err(fail(unsupervised(
                            "the stage is not supervised (a source, a junction, or an \
                             operator that cannot retry one element)",
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks and applies `config`, answering on `reply` once every supervised
    /// stage has taken its policy.
    fn apply(&self, config: PolicyConfig, reply: Reply) {
        let Some(pipeline) = self.pipeline.upgrade() else {
            let _ = reply.send(Err(ReconfigError::NotRunning));
            return;
        };
        if let Err(reason) = self.check(&config) {
            let _ = reply.send(Err(ReconfigError::Rejected {
                stage: pipeline.name.clone(),
                reason,
            }));
            return;
        }
        pipeline.set_strategy(config.strategy());
        let mut answers = Vec::new();
        for (index, node_name) in self.names.iter().enumerate() {
            let (_, policy) = lookup(&config, node_name);
            pipeline.stages[index].set_stall_override(policy.stall_timeout);
            pipeline.stages[index].set_on_stall_override(policy.on_stall);
            if let Some(setter) = &self.setters[index] {
                let (tx, rx) = oneshot::channel();
                // A control message: no elements, no credit (see the audit).
                setter.do_send(SetPolicy { policy, reply: tx });
                answers.push(rx);
            }
        }
        let generation = self.generation.fetch_add(1, Relaxed) + 1;
        let name = pipeline.name.clone();
        let gather = async move {
            let mut refused = None;
            for answer in answers {
                match answer.await {
                    // A stage that has finished takes nothing more; the others do.
                    Ok(Ok(_)) | Ok(Err(ReconfigError::Stopped { .. })) | Err(_) => {}
                    Ok(Err(err)) => {
                        refused.get_or_insert(err);
                    }
                }
            }
            let _ = reply.send(match refused {
                Some(err) => Err(err),
                None => Ok(Applied {
                    stage: name,
                    generation,
                }),
            });
        };
        // If the arbiter has stopped, so has the pipeline: the reply channel is
        // dropped with the future, which the caller sees as `Stopped`.
        let _ = pipeline.timer_arbiter.spawn(gather);
    }
}

/// The name in `names` nearest to `name` by edit distance, if it is near enough
/// to be a likely misspelling: a third of the name's length in edits, at least 1
/// and at most 3.
pub(crate) fn nearest<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> Option<String> {
    let limit = (name.chars().count() / 3).clamp(1, 3);
    names
        .map(|n| (edit_distance(name, n), n))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, n)| n.to_owned())
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance("parse", "parse"), 0);
        assert_eq!(edit_distance("parze", "parse"), 1);
        assert_eq!(edit_distance("pars", "parse"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("enrich", "parse"), 5);
    }

    #[test]
    fn nearest_suggests_only_a_likely_misspelling() {
        let names = ["records", "parse", "enrich", "sink"];
        assert_eq!(
            nearest("parze", names.iter().copied()),
            Some("parse".to_owned())
        );
        assert_eq!(
            nearest("enrihc", names.iter().copied()),
            Some("enrich".to_owned())
        );
        assert_eq!(nearest("database", names.iter().copied()), None);
    }
}
