//! What the example programs share: a PostHog-compatible receiver on 127.0.0.1, used by the
//! demo to show what arrives and by the programs' tests to check it. The programs themselves
//! are the binaries in `src/bin/`; each defines its own events, so that each binary's
//! `telemetry schema` lists only its own.

pub mod receiver;
