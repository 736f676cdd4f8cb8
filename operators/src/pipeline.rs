//! [`Pipeline`]: where pipelines start, one constructor per kind of source.

use futures::Stream;
use weir_runtime::Flow;

use crate::source::{
    BatchSource, Ingress, IngressSource, IterSource, ReplayableSource, StreamSource,
};

/// Where pipelines start: one constructor per kind of source.
#[derive(Debug, Clone, Copy)]
pub struct Pipeline;

impl Pipeline {
    /// A source that emits the items of an iterator, pulling only what downstream has
    /// room for.
    ///
    /// Not replayable: in a checkpointed pipeline a restore starts it again with
    /// the iterator it was built with, from its beginning (see
    /// [`replayable`](Self::replayable) for a source that resumes).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::{FlowExt, Pipeline};
    /// let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(["a", "b"].map(String::from)).collect().run(&rt)?.wait()?;
    /// assert_eq!(done.output, ["a", "b"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[allow(clippy::should_implement_trait)]
    pub fn from_iter<I>(iter: I) -> Flow<I::Item>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: Send + 'static,
    {
        Flow::from_source(IterSource::new(iter.into_iter()))
    }

    /// A source that can resume from a checkpoint: `make(position)` gives the
    /// elements from the `position`-th on (0 for the whole stream). Its
    /// checkpointed state is the number of elements it has emitted; a pipeline
    /// restored from a checkpoint calls `make` with that number, so each element
    /// enters the pipeline once across a crash. `make` must be deterministic: the
    /// iterator it gives at `n` yields what the one at 0 yields after its first
    /// `n` items. See [`ReplayableSource`].
    ///
    /// # Examples
    ///
    /// Lines of a table held in memory, resumable by index:
    ///
    /// ```
    /// use weir_operators::{FlowExt, Pipeline};
    /// let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let rows = std::sync::Arc::new(vec!["a", "b", "c"]);
    /// let done = Pipeline::replayable(move |from| {
    ///     let rows = std::sync::Arc::clone(&rows);
    ///     (from as usize..rows.len()).map(move |i| rows[i].to_string())
    /// })
    /// .collect()
    /// .run(&rt)?
    /// .wait()?;
    /// assert_eq!(done.output, ["a", "b", "c"]);
    ///
    /// // A range is its own replay: resumed at 2 it starts at 2.
    /// let done = Pipeline::replayable(|from| from..5).collect().run(&rt)?.wait()?;
    /// assert_eq!(done.output, [0, 1, 2, 3, 4]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn replayable<F, I>(make: F) -> Flow<I::Item>
    where
        F: FnMut(u64) -> I + Send + 'static,
        I: IntoIterator + 'static,
        I::IntoIter: Send + 'static,
        I::Item: Send + 'static,
    {
        Flow::from_source(ReplayableSource::new(make))
    }

    /// A source that emits the elements of each batch an iterator yields, in order,
    /// pulling a batch only when downstream has room: for input that already comes
    /// in `Vec`s (a client's poll, a page of rows). A batch that fits downstream's
    /// room goes on whole, its `Vec` moved, no element copied; a bigger one is
    /// emitted over several steps. See [`BatchSource`].
    ///
    /// Not replayable: in a checkpointed pipeline a restore starts it again with
    /// the iterator it was built with, from its beginning (see
    /// [`replayable`](Self::replayable) for a source that resumes).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::{FlowExt, Pipeline};
    /// let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let pages = vec![vec![1, 2, 3], vec![], vec![4, 5]];
    /// let done = Pipeline::from_batches(pages).collect().run(&rt)?.wait()?;
    /// assert_eq!(done.output, [1, 2, 3, 4, 5]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_batches<I, T>(batches: I) -> Flow<T>
    where
        I: IntoIterator<Item = Vec<T>>,
        I::IntoIter: Send + 'static,
        T: Send + 'static,
    {
        Flow::from_source(BatchSource::new(batches.into_iter()))
    }

    /// A source that polls a [`Stream`], only while downstream has room.
    ///
    /// Not replayable: in a checkpointed pipeline a restore polls the stream it
    /// was built with from where that stream is; what it yielded after the last
    /// checkpoint before a crash is lost (at most once).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::{FlowExt, Pipeline};
    /// let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let stream = futures::stream::iter(vec![1, 2, 3]);
    /// let done = Pipeline::from_stream(stream).collect().run(&rt)?.wait()?;
    /// assert_eq!(done.output, [1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_stream<S>(stream: S) -> Flow<S::Item>
    where
        S: Stream + Send + 'static,
        S::Item: Send + 'static,
    {
        Flow::from_source(StreamSource::new(stream))
    }

    /// A source fed through a bounded [`Ingress`] handle: `send(x).await` waits while
    /// `capacity` elements are buffered, `try_send(x)` hands `x` back when full or
    /// closed. The stream ends when every `Ingress` clone is dropped.
    ///
    /// Choosing a capacity: it is the burst the service can hand over without
    /// waiting; the pipeline behind it adds its own edge capacities.
    ///
    /// Not replayable: elements accepted by `send`/`try_send` but not yet covered
    /// by a completed checkpoint are lost in a crash (at most once); after a
    /// restore the ingress takes new elements only.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::{FlowExt, Pipeline};
    /// let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let (ingress, flow) = Pipeline::ingress::<u32>(16);
    /// let running = flow.map(|x| x + 1).collect().run(&rt)?;
    /// ingress.try_send(1).unwrap();
    /// futures::executor::block_on(ingress.send(2)).unwrap();
    /// drop(ingress); // ends the stream
    /// assert_eq!(running.wait()?.output, [2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ingress<T: Send + 'static>(capacity: usize) -> (Ingress<T>, Flow<T>) {
        let (ingress, source) = IngressSource::channel(capacity);
        (ingress, Flow::from_source(source))
    }
}

impl Pipeline {
    /// A source that replays a dead-letter file written through
    /// [`SharedFileDlq`](weir_supervisor::dead_letter::SharedFileDlq): every letter,
    /// oldest first, with its element, stage, error and attempts. Map it to the
    /// element to process the dead letters again.
    ///
    /// Not replayable: in a checkpointed pipeline a restore reads the file again
    /// from its first letter.
    ///
    /// # Errors
    ///
    /// The file cannot be opened or does not start with a dead-letter header.
    pub fn replay_dead_letters<T>(
        path: impl AsRef<std::path::Path>,
    ) -> Result<
        Flow<weir_supervisor::dead_letter::DeadLetter<T>>,
        weir_supervisor::dead_letter::DlqError,
    >
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        Ok(Flow::from_source(crate::source::ReplaySource::open(path)?))
    }
}
