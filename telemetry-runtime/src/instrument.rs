//! What `#[instrument_command]` expands to: timing a call, recording how it ended, and knowing
//! which instrumented command the current thread is in.

/// The innermost instrumented call running on this thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code, reason = "read by the panic hook")]
pub(crate) struct Frame {
    /// The command's name (`#[instrument_command(name = "...")]`, else the function's name).
    pub command: &'static str,
    /// The name of the instrumented function.
    pub function: &'static str,
}

/// The innermost instrumented call running on this thread, if any.
#[allow(dead_code, reason = "read by the panic hook")]
pub(crate) fn current() -> Option<Frame> {
    None
}
