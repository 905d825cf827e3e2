#![forbid(unsafe_code)]
#![deny(warnings, unused_qualifications, missing_docs)]
#![warn(clippy::pedantic)]
//! Bodies that return what they borrow mutably, bodies that never return, and methods of a
//! type generic over `T`.

use telemetry_runtime::instrument_command;

/// A counter.
pub struct Counter {
    /// Its value.
    pub value: u32,
}

impl Counter {
    /// Lends its value mutably.
    #[instrument_command]
    pub fn value_mut(&mut self) -> &mut u32 {
        &mut self.value
    }
}

/// Lends the last item mutably.
#[instrument_command]
pub fn last(#[count] items: &mut Vec<u8>) -> Option<&mut u8> {
    items.last_mut()
}

/// A unit function that ends by diverging when asked to.
#[instrument_command]
pub fn stop(#[plain] now: bool) {
    if now {
        std::process::exit(0)
    }
}

/// Never returns.
#[instrument_command]
pub fn forever() -> ! {
    std::process::exit(0)
}

/// Generic over `T`, with methods that send arguments of types mentioning `T`.
pub struct Stack<T> {
    /// The items.
    pub items: Vec<T>,
}

impl<T: Clone> Stack<T> {
    /// Pushes many.
    #[instrument_command]
    pub fn extend(&mut self, #[count] more: Vec<T>, #[count] _unused: &[T]) -> usize {
        self.items.extend(more);
        self.items.len()
    }
}

fn main() {
    let mut counter = Counter { value: 1 };
    *counter.value_mut() += 1;
    assert_eq!(counter.value, 2);
    let mut items = vec![1, 2];
    *last(&mut items).unwrap() = 5;
    assert_eq!(items, [1, 5]);
    stop(false);
    let mut stack = Stack { items: vec![1] };
    assert_eq!(stack.extend(vec![2, 3], &[]), 3);
    if items.is_empty() {
        forever();
    }
}
