#![forbid(unsafe_code)]
#![deny(warnings, unused_qualifications, missing_docs)]
//! `async` functions, methods (by reference, by value, `async`) and generic functions.

use std::fmt::Display;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use telemetry_runtime::dispositions::Hashable;
use telemetry_runtime::instrument_command;

/// Fetches something.
#[instrument_command]
pub async fn fetch(#[count] urls: Vec<String>) -> Result<usize, std::io::Error> {
    let size: usize = "3".parse().map_err(std::io::Error::other)?;
    Ok(urls.len() + size)
}

/// A client.
pub struct Client {
    /// Requests made.
    pub requests: u32,
}

impl Client {
    /// By mutable reference.
    #[instrument_command(name = "client get")]
    pub fn get(&mut self, #[hash] url: &str) -> u32 {
        let _ = url;
        self.requests += 1;
        self.requests
    }

    /// By value.
    #[instrument_command]
    pub fn close(self) -> u32 {
        self.requests
    }

    /// `async`, by reference.
    #[instrument_command]
    pub async fn ping(&self, #[is_set] token: Option<String>) -> bool {
        token.is_some() && self.requests > 0
    }

    /// Uses `Self`.
    #[instrument_command]
    pub fn with(#[plain] requests: u32) -> Self {
        Self { requests }
    }
}

/// Generic over a type and a constant, with an `impl Trait` argument.
#[instrument_command]
pub fn describe<T: Display + Hashable, const N: usize>(
    #[hash] key: T,
    #[count] items: [u8; N],
    #[scrub] message: impl Display,
) -> String {
    format!("{key}{}{message}", items.len())
}

/// Generic `async`, with a where clause.
#[instrument_command]
pub async fn total<I>(#[count] values: Vec<I>) -> usize
where
    I: Copy + Into<usize>,
{
    values.iter().map(|value| (*value).into()).sum()
}

fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("these futures never wait"),
    }
}

fn assert_send<T: Send>(value: T) -> T {
    value
}

fn main() {
    assert_eq!(ready(assert_send(fetch(vec![String::new()]))).unwrap(), 4);
    let mut client = Client::with(0);
    assert_eq!(client.get("https://example.com"), 1);
    assert!(ready(assert_send(client.ping(Some(String::new())))));
    assert_eq!(client.close(), 1);
    assert_eq!(describe("k", [1, 2], "m"), "k2m");
    assert_eq!(ready(total(vec![1u8, 2])), 3);
}
