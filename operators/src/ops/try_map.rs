//! [`TryMap`]: a fallible map whose errors say what kind of failure they are.

use std::marker::PhantomData;
use std::task::Context;

use weir_runtime::Failure;
use weir_runtime::operator::{Io, Operator, Step};

/// Applies a fallible function to every element. An `Err(failure)` fails the
/// element with the failure's class (`Failure::error(ErrorClass::Transient, ..)`,
/// `Permanent`, `Timeout`, …): a supervised stage applies its policy to it (retry,
/// dead-letter, …), an unsupervised one fails the pipeline. Created by
/// [`FlowExt::try_map`](crate::FlowExt::try_map). Order preserved.
pub struct TryMap<F, In, Out> {
    f: F,
    _types: PhantomData<fn(In) -> Out>,
}

impl<F, In, Out> TryMap<F, In, Out> {
    /// The operator behind [`FlowExt::try_map`](crate::FlowExt::try_map), for [`Flow::via`](weir_runtime::Flow::via) (elements that are not `Clone`).
    pub fn new(f: F) -> Self {
        TryMap {
            f,
            _types: PhantomData,
        }
    }
}

impl<F, In, Out> std::fmt::Debug for TryMap<F, In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TryMap")
    }
}

impl<F, In, Out> Operator for TryMap<F, In, Out>
where
    F: FnMut(In) -> Result<Out, Failure> + Send + 'static,
    In: Send + 'static,
    Out: Send + 'static,
{
    type In = In;
    type Out = Out;

    fn kind(&self) -> &'static str {
        "try_map"
    }

    fn fusable(&self) -> bool {
        true
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn step(&mut self, io: &mut Io<'_, In, Out>, _cx: &mut Context<'_>) -> Step {
        while io.has_room() {
            let Some(x) = io.pop() else { break };
            match (self.f)(x) {
                Ok(y) => io.push(y),
                // The element is the last one taken: the stage knows which failed.
                Err(failure) => return Step::Failed(failure),
            }
        }
        io.finish_when_drained()
    }
}

#[cfg(test)]
mod tests {
    use weir_runtime::{ErrorClass, Failure, PipelineError};

    use crate::test_support::run_small;
    use crate::{FlowExt, Pipeline};

    #[test]
    fn maps_every_ok_in_order() {
        let done = run_small(
            Pipeline::from_iter(0..20_u32)
                .try_map(|x| Ok::<_, Failure>(x * 2))
                .collect(),
        );
        assert_eq!(done.output, (0..20).map(|x| x * 2).collect::<Vec<_>>());
    }

    #[test]
    fn an_error_fails_the_stage_with_its_class() {
        let err = Pipeline::from_iter(0..20_u32)
            .try_map(|x| {
                if x == 7 {
                    Err(Failure::error(
                        ErrorClass::Permanent,
                        format!("bad record {x}"),
                    ))
                } else {
                    Ok(x)
                }
            })
            .name("parse")
            .collect()
            .run(&crate::test_support::rt())
            .unwrap()
            .wait()
            .unwrap_err();
        match err {
            PipelineError::StageFailed {
                stage,
                failure,
                report,
            } => {
                assert_eq!(stage, "parse");
                assert_eq!(failure.class(), ErrorClass::Permanent);
                assert_eq!(report.stage("parse").unwrap().failed, 1);
                report.check_conservation().unwrap();
            }
            other => panic!("{other:?}"),
        }
    }
}
