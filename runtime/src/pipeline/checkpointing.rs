//! Preparing a checkpointed pipeline at launch: every node must be able to take
//! part, the directory must be usable, and the newest complete checkpoint in it is
//! restored into the nodes before they start.

use std::collections::{BTreeMap, BTreeSet};

use super::node::NodeState;
use super::parts::{KeyedReplica, Parts};
use crate::checkpoint::dead_letters::{self, DeadLetterFiles};
use crate::checkpoint::{
    CheckpointConfig, CheckpointStore, Coordinator, RestoreContext, Snapshot, StateError,
    StoreOptions,
};
use crate::error::BuildError;

/// Checks the graph, opens the store, restores the newest complete checkpoint, and
/// returns the pipeline's coordinator.
pub(super) fn prepare(
    parts: &mut Parts,
    config: &CheckpointConfig,
    pipeline: &str,
) -> Result<Coordinator, BuildError> {
    let n = parts.len();
    let names: Vec<String> = (0..n).map(|i| parts.name(i)).collect();
    for e in &parts.edges {
        if e.feedback {
            return Err(BuildError::NotCheckpointable {
                stage: names[e.to.node].clone(),
                reason: "it closes a feedback edge (a cycle): elements circling in it belong \
                         to no barrier, so no checkpoint of a cycle is consistent"
                    .into(),
            });
        }
    }
    let mut stateful = vec![false; n];
    for (i, name) in names.iter().enumerate() {
        match parts.node_mut(i).checkpoint_kind() {
            NodeState::Not(reason) => {
                return Err(BuildError::NotCheckpointable {
                    stage: name.clone(),
                    reason,
                });
            }
            NodeState::Stateful => stateful[i] = true,
            NodeState::Stateless => {}
        }
    }
    let dir_err = |reason: String| BuildError::CheckpointDir {
        dir: config.dir.display().to_string(),
        reason,
    };
    let store = CheckpointStore::open(
        &config.dir,
        StoreOptions {
            retain: config.retain,
            max_state_bytes: config.max_state_bytes,
            fsync: config.fsync,
        },
    )
    .map_err(|e| dir_err(e.to_string()))?;
    let mut upstream = vec![Vec::new(); n];
    let mut has_output = vec![false; n];
    for e in &parts.edges {
        upstream[e.to.node].push(e.from.node);
        has_output[e.from.node] = true;
    }
    let mut unreplayable = Vec::new();
    let mut at_least_once = Vec::new();
    for i in 0..n {
        if stateful[i] || parts.meta(i).junction {
            continue;
        }
        if upstream[i].is_empty() {
            tracing::warn!(
                stage = %names[i],
                "a source without a checkpointed position: after a restore it does not resume where it was"
            );
            unreplayable.push(names[i].clone());
        } else if !has_output[i] {
            at_least_once.push(names[i].clone());
        }
    }
    let guarantees = (unreplayable, at_least_once);
    // Ids keep increasing over every run that used the directory.
    let next_id = store.next_id();
    // Before any restore: a file another run still writes to is refused.
    let found = (0..n)
        .filter_map(|i| {
            parts
                .node_mut(i)
                .dead_letter_file()
                .map(|f| (names[i].clone(), f))
        })
        .collect();
    let dead_letters = DeadLetterFiles::attach(found, pipeline, n)?;
    let restore_started = std::time::Instant::now();
    let restored = if config.restore {
        restore_latest(parts, config, &store, &names, &stateful, &dead_letters)?
    } else {
        None
    };
    if restored.is_none() {
        dead_letters.fresh_start(&config.dir, config.restore)?;
    }
    let restore_took = restored.map_or(std::time::Duration::ZERO, |_| restore_started.elapsed());
    Ok(Coordinator::new(
        config.clone(),
        store,
        upstream,
        restored,
        next_id,
        guarantees,
        restore_took,
    )
    .with_dead_letters(dead_letters))
}

/// Restores every stateful node from the newest complete checkpoint in `store`;
/// returns its id, or `None` when there is none (a fresh start).
fn restore_latest(
    parts: &mut Parts,
    config: &CheckpointConfig,
    store: &CheckpointStore,
    names: &[String],
    stateful: &[bool],
    dead_letters: &DeadLetterFiles,
) -> Result<Option<u64>, BuildError> {
    let loaded = store.load_latest().map_err(|e| BuildError::CheckpointDir {
        dir: config.dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let Some((manifest, data)) = loaded.checkpoint else {
        tracing::info!(
            dir = %config.dir.display(),
            skipped = loaded.skipped.len(),
            "no complete checkpoint: starting fresh"
        );
        return Ok(None);
    };
    let id = manifest.id;
    let mismatch = |stage: &str, reason: String| BuildError::CheckpointMismatch {
        checkpoint: id,
        stage: stage.to_owned(),
        reason,
    };
    let ctx = RestoreContext {
        checkpoint: id,
        max_state_bytes: config.max_state_bytes,
        replica: None,
    };
    // The dead-letter files first: a stage's own restore may cut one further.
    dead_letters.restore(&data, config, &ctx)?;
    let mut states: BTreeMap<String, Snapshot> = BTreeMap::new();
    for s in data.stages {
        if s.kind != dead_letters::KIND {
            states.insert(s.stage, s.snapshot);
        }
    }
    let fresh: BTreeSet<&str> = config.fresh.iter().map(String::as_str).collect();
    let discard: BTreeSet<&str> = config.discard.iter().map(String::as_str).collect();
    let keyed: Vec<Option<KeyedReplica>> = (0..names.len())
        .map(|i| parts.meta(i).keyed.clone().filter(|_| stateful[i]))
        .collect();
    for name in states.keys() {
        let here = names.iter().position(|n| n == name);
        // A replica of a keyed pool that has fewer replicas now: its state goes
        // to the replicas that own its keys.
        let rescaled = keyed.iter().flatten().any(|k| k.replica_in(name).is_some());
        if here.is_none_or(|i| !stateful[i]) && !rescaled && !discard.contains(name.as_str()) {
            let why = if here.is_some() {
                "the checkpoint holds state for it, but the stage keeps none now"
            } else {
                "the checkpoint holds state for it, but the pipeline has no stage by that name \
                 (removed or renamed?)"
            };
            return Err(mismatch(
                name,
                format!("{why}; drop that state with CheckpointConfig::discard_state"),
            ));
        }
    }
    let undecodable = |name: &str, e: StateError| {
        mismatch(
            name,
            format!("{e}; let it start empty with CheckpointConfig::discard_state"),
        )
    };
    for (i, name) in names.iter().enumerate() {
        if !stateful[i] {
            continue;
        }
        if discard.contains(name.as_str()) {
            // Its stored state (of another version, say) is ignored: it starts empty.
            tracing::info!(stage = %name, checkpoint = id, "stage starts empty: its state is discarded");
            continue;
        }
        if let Some(replica) = &keyed[i]
            && let Some(merged) = rescale(replica, &states).map_err(|e| mismatch(name, e))?
        {
            let ctx = RestoreContext {
                replica: Some((replica.replica, replica.replicas)),
                ..ctx.clone()
            };
            parts
                .node_mut(i)
                .restore(&merged, &ctx)
                .map_err(|e| undecodable(name, e))?;
            continue;
        }
        match states.get(name) {
            Some(snapshot) => parts
                .node_mut(i)
                .restore(snapshot, &ctx)
                .map_err(|e| undecodable(name, e))?,
            None if fresh.contains(name.as_str()) => {}
            None => {
                return Err(mismatch(
                    name,
                    "the checkpoint has no state for this stateful stage (added or renamed \
                     since?); let it start empty with CheckpointConfig::start_fresh"
                        .into(),
                ));
            }
        }
    }
    tracing::info!(
        dir = %config.dir.display(),
        checkpoint = id,
        stages = states.len(),
        "restored from checkpoint"
    );
    Ok(Some(id))
}

/// For a stage of a keyed pool: the merged state of that stage in every replica
/// of the checkpointed run, when their count differs from the pool's now; `None`
/// when it is the same (each replica restores its own, by name) or the checkpoint
/// holds no replica of it.
fn rescale(
    replica: &KeyedReplica,
    states: &BTreeMap<String, Snapshot>,
) -> Result<Option<Snapshot>, String> {
    let mut old: Vec<(usize, &Snapshot)> = states
        .iter()
        .filter_map(|(name, s)| replica.replica_in(name).map(|j| (j, s)))
        .collect();
    old.sort_unstable_by_key(|(j, _)| *j);
    if old.is_empty() || old.len() == replica.replicas {
        return Ok(None);
    }
    if old.iter().enumerate().any(|(want, (j, _))| *j != want) {
        let held: Vec<usize> = old.iter().map(|(j, _)| *j).collect();
        return Err(format!(
            "the checkpoint holds replicas {held:?} of keyed pool {:?}, not 0..{}: it cannot \
             be rescaled",
            replica.pool,
            old.len()
        ));
    }
    if replica.replica == 0 {
        tracing::info!(
            pool = %replica.pool,
            from = old.len(),
            to = replica.replicas,
            "rescaling a keyed pool's state"
        );
    }
    Snapshot::merge(old.into_iter().map(|(_, s)| s.clone()))
        .map(Some)
        .map_err(|e| format!("its replicas' states do not merge: {e}"))
}
