//! Write batching for HTTP/2 connections: the frames of many streams leave in one TLS write.
//!
//! h2 flushes its codec after every DATA frame of 256 bytes or more (it chains the payload
//! rather than copy it, and a chained frame leaves the codec "full"), and each flush reaches the
//! socket as its own TLS record and `writev`. A watch event for 1,000 watchers multiplexed over a
//! few connections then costs one system call, one TLS record and one loopback segment per
//! watcher: about 40% of the server's CPU in the watch fan-out benchmark.
//!
//! [`BatchedWrites`] sits between hyper and the connection's stream. Writes are copied into a
//! buffer. A flush that follows new writes yields once (it wakes its task and returns
//! `Pending`), which lets the other streams' tasks queue their frames first; the flush that
//! finds no new writes since that yield drains the buffer into the stream and flushes it. So a
//! burst of frames costs one write, and a lone response waits one turn of the scheduler. The
//! buffer is drained before it grows past [`HIGH_WATER`], so a stream never holds more.
//!
//! HTTP/1 connections are not batched: a connection carries one response at a time, and hyper's
//! HTTP/1 writer buffers already.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes held before they must go out, whatever the flushes say: a few TLS records' worth.
pub const HIGH_WATER: usize = 64 * 1024;
/// A buffer larger than this after a small batch is released rather than kept for the
/// connection's life (idle connections should cost little).
const KEEP_CAPACITY: usize = 16 * 1024;

/// A stream whose writes are batched (when `enabled`) as the module says.
#[derive(Debug)]
pub struct BatchedWrites<S> {
    inner: S,
    enabled: bool,
    buf: Vec<u8>,
    /// How much of `buf` has reached `inner`.
    sent: usize,
    /// Writes arrived since the last flush that yielded.
    written_since_yield: bool,
}

impl<S> BatchedWrites<S> {
    pub fn new(inner: S, enabled: bool) -> Self {
        BatchedWrites {
            inner,
            enabled,
            buf: Vec::new(),
            sent: 0,
            written_since_yield: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn unsent(&self) -> usize {
        self.buf.len() - self.sent
    }

    fn accept(&mut self, bufs: &[io::IoSlice<'_>]) -> usize {
        if self.buf.capacity() == 0 {
            // Skips the small steps of growth: a batch is rarely less than this.
            self.buf.reserve(KEEP_CAPACITY);
        }
        let mut n = 0;
        for b in bufs {
            self.buf.extend_from_slice(b);
            n += b.len();
        }
        if n > 0 {
            self.written_since_yield = true;
        }
        n
    }
}

impl<S: AsyncWrite + Unpin> BatchedWrites<S> {
    /// Writes everything buffered to `inner` (not flushing it), keeping the buffer for the rest
    /// of a burst: a large response passes through it 64 KiB at a time.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.unsent() > 0 {
            let n = std::task::ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// After a small batch, the end of a burst: a buffer grown past [`KEEP_CAPACITY`] is
    /// released. A large batch is kept for the next: a response of megabytes leaves a batch of
    /// tens of kilobytes at a time, and growing a fresh buffer for each copied it twice more.
    fn release_large_buffer(&mut self) {
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
    }

    fn poll_batched_write(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.unsent() >= HIGH_WATER {
            std::task::ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(self.accept(bufs)))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BatchedWrites<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BatchedWrites<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.enabled {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        this.poll_batched_write(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.enabled {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        this.poll_batched_write(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        // Slices are copied into the buffer, so vectored writes cost nothing extra.
        self.enabled || self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unsent() == 0 {
            // Nothing since the last batch: the burst is over (h2 flushes on each turn of the
            // connection, and hyper's keep-alive pings bring one to an idle connection).
            this.release_large_buffer();
        } else {
            if this.written_since_yield {
                // Let the other streams' tasks add their frames before this batch leaves.
                this.written_since_yield = false;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let batch = this.unsent();
            std::task::ready!(this.poll_drain(cx))?;
            if batch < KEEP_CAPACITY {
                this.release_large_buffer();
            }
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    /// An in-memory stream that records each write it accepts and can refuse to make progress.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushes: usize,
        blocked: bool,
        /// At most this many bytes per write (0: all).
        max_write: usize,
    }

    impl AsyncRead for Recorder {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            if this.blocked {
                return Poll::Pending;
            }
            let n = match this.max_write {
                0 => buf.len(),
                m => buf.len().min(m),
            };
            this.writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if this.blocked {
                return Poll::Pending;
            }
            this.flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Counts how often the task was woken.
    #[derive(Default)]
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    struct Harness {
        stream: BatchedWrites<Recorder>,
        wakes: Arc<Wakes>,
    }

    impl Harness {
        fn new(enabled: bool) -> Self {
            Harness {
                stream: BatchedWrites::new(Recorder::default(), enabled),
                wakes: Arc::new(Wakes::default()),
            }
        }

        fn with_cx<T>(
            &mut self,
            f: impl FnOnce(Pin<&mut BatchedWrites<Recorder>>, &mut Context<'_>) -> T,
        ) -> T {
            let waker = std::task::Waker::from(self.wakes.clone());
            let mut cx = Context::from_waker(&waker);
            f(Pin::new(&mut self.stream), &mut cx)
        }

        fn write(&mut self, data: &[u8]) -> Poll<io::Result<usize>> {
            self.with_cx(|s, cx| s.poll_write(cx, data))
        }

        fn flush(&mut self) -> Poll<io::Result<()>> {
            self.with_cx(|s, cx| s.poll_flush(cx))
        }

        fn wakes(&self) -> usize {
            self.wakes.0.load(std::sync::atomic::Ordering::SeqCst)
        }

        fn inner(&self) -> &Recorder {
            self.stream.get_ref()
        }
    }

    fn ready_ok<T>(p: Poll<io::Result<T>>) -> T {
        match p {
            Poll::Ready(Ok(v)) => v,
            Poll::Ready(Err(e)) => panic!("failed: {e}"),
            Poll::Pending => panic!("pending"),
        }
    }

    #[test]
    fn a_burst_of_frames_leaves_in_one_write() {
        let mut h = Harness::new(true);
        // h2's pattern for chained frames: write, flush, (re-polled) write, flush, ...
        for frame in [&b"one"[..], b"two", b"three"] {
            assert_eq!(ready_ok(h.write(frame)), frame.len());
            assert!(h.flush().is_pending(), "a flush after new writes yields");
        }
        assert!(
            h.inner().writes.is_empty(),
            "nothing written before the burst ends"
        );
        assert_eq!(h.wakes(), 3, "each yield wakes the task to be polled again");
        // The poll after the last yield: h2 flushes with nothing new to write.
        ready_ok(h.flush());
        assert_eq!(h.inner().writes, vec![b"onetwothree".to_vec()]);
        assert_eq!(h.inner().flushes, 1);
    }

    /// Drains a batch the way h2 does: a flush that yields, then the flush that writes.
    fn send(h: &mut Harness, data: &[u8]) {
        assert_eq!(ready_ok(h.write(data)), data.len());
        assert!(h.flush().is_pending());
        ready_ok(h.flush());
    }

    #[test]
    fn a_large_response_keeps_its_buffer_until_a_small_batch_ends_it() {
        let mut h = Harness::new(true);
        let chunk = vec![7u8; 48 * 1024];
        send(&mut h, &chunk);
        let kept = h.stream.buf.capacity();
        assert!(kept >= chunk.len(), "the buffer grew to {kept}");
        for _ in 0..8 {
            send(&mut h, &chunk);
            assert_eq!(
                h.stream.buf.capacity(),
                kept,
                "a large batch keeps the buffer"
            );
        }
        send(&mut h, b"the last frame");
        assert_eq!(h.stream.buf.capacity(), 0, "a small batch releases it");
        assert_eq!(h.inner().writes.len(), 10);
    }

    #[test]
    fn a_flush_with_nothing_to_send_releases_a_large_buffer() {
        let mut h = Harness::new(true);
        send(&mut h, &vec![7u8; 48 * 1024]);
        assert!(h.stream.buf.capacity() > KEEP_CAPACITY);
        ready_ok(h.flush());
        assert_eq!(h.stream.buf.capacity(), 0, "an idle turn releases it");
    }

    #[test]
    fn a_lone_response_waits_one_turn_then_leaves() {
        let mut h = Harness::new(true);
        ready_ok(h.write(b"headers+data"));
        assert!(h.flush().is_pending());
        ready_ok(h.flush());
        assert_eq!(h.inner().writes, vec![b"headers+data".to_vec()]);
        // Nothing buffered: a flush goes straight through, with no yield.
        ready_ok(h.flush());
        assert_eq!(h.inner().flushes, 2);
        assert_eq!(h.wakes(), 1);
    }

    #[test]
    fn a_full_buffer_is_written_before_more_is_taken() {
        let mut h = Harness::new(true);
        let chunk = vec![7u8; HIGH_WATER / 2];
        ready_ok(h.write(&chunk));
        ready_ok(h.write(&chunk));
        assert!(h.inner().writes.is_empty());
        ready_ok(h.write(b"x"));
        let written: usize = h.inner().writes.iter().map(Vec::len).sum();
        assert_eq!(
            written, HIGH_WATER,
            "the buffer went out before the next write"
        );
        assert!(h.flush().is_pending());
        ready_ok(h.flush());
        assert_eq!(h.inner().writes.last().map(Vec::as_slice), Some(&b"x"[..]));
    }

    #[test]
    fn a_blocked_stream_keeps_the_bytes_until_it_takes_them() {
        let mut h = Harness::new(true);
        ready_ok(h.write(b"abcdef"));
        assert!(h.flush().is_pending());
        h.stream.inner.blocked = true;
        assert!(h.flush().is_pending(), "the socket is full");
        h.stream.inner.blocked = false;
        h.stream.inner.max_write = 4;
        ready_ok(h.flush());
        assert_eq!(h.inner().writes, vec![b"abcd".to_vec(), b"ef".to_vec()]);
    }

    #[test]
    fn shutdown_writes_what_is_buffered() {
        let mut h = Harness::new(true);
        ready_ok(h.write(b"goaway"));
        ready_ok(h.with_cx(|s, cx| s.poll_shutdown(cx)));
        assert_eq!(h.inner().writes, vec![b"goaway".to_vec()]);
    }

    #[test]
    fn disabled_passes_every_write_through() {
        let mut h = Harness::new(false);
        ready_ok(h.write(b"a"));
        ready_ok(h.flush());
        ready_ok(h.write(b"b"));
        assert_eq!(h.inner().writes, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(h.wakes(), 0);
    }

    #[test]
    fn vectored_writes_are_taken_whole() {
        let mut h = Harness::new(true);
        let n = ready_ok(h.with_cx(|s, cx| {
            s.poll_write_vectored(cx, &[io::IoSlice::new(b"head"), io::IoSlice::new(b"body")])
        }));
        assert_eq!(n, 8);
        assert!(h.flush().is_pending());
        ready_ok(h.flush());
        assert_eq!(h.inner().writes, vec![b"headbody".to_vec()]);
    }
}
