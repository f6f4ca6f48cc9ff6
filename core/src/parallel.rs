//! Independent work items on a few threads, so that several model requests are in flight at
//! once: the embedded engine batches them, an endpoint serves them concurrently. Used by the
//! analyzer's questions, the OpenAI backend's `decide` and the evaluator.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

/// Applies `work` to every item on `threads` threads and calls `done` on the calling thread with
/// each item's index and result, in the order they finish. The first error stops handing out
/// items; items already running finish and are passed to `done`, then the error is returned.
pub fn for_each_unordered<T, R, E>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> Result<R, E> + Sync,
    mut done: impl FnMut(usize, R) -> Result<(), E>,
) -> Result<(), E>
where
    T: Sync,
    R: Send,
    E: Send,
{
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            let tx = tx.clone();
            let (next, stop, work) = (&next, &stop, &work);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = work(item);
                    if result.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if tx.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut first_error = None;
        for (i, result) in rx {
            match result.and_then(|r| done(i, r)) {
                Ok(()) => {}
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    })
}

/// Applies `work` to every item on up to `threads` threads; the results come in the order of
/// `items`, whatever order they finish in.
pub fn map<T, R>(items: &[T], threads: usize, work: impl Fn(&T) -> R + Sync) -> Vec<R>
where
    T: Sync,
    R: Send,
{
    let mut out: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    let finished = for_each_unordered(
        items,
        threads,
        |item| Ok::<_, std::convert::Infallible>(work(item)),
        |i, r| {
            out[i] = Some(r);
            Ok(())
        },
    );
    match finished {
        Ok(()) => out
            .into_iter()
            .map(|r| r.expect("every item ran"))
            .collect(),
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_once_and_errors_stop_the_rest() {
        let items: Vec<usize> = (0..50).collect();
        let mut seen = Vec::new();
        for_each_unordered(
            &items,
            4,
            |&x| Ok::<_, String>(x * 2),
            |i, r| {
                assert_eq!(r, items[i] * 2);
                seen.push(i);
                Ok(())
            },
        )
        .unwrap();
        seen.sort();
        assert_eq!(seen, items);

        let mut finished = 0;
        let err = for_each_unordered(
            &items,
            2,
            |&x| {
                if x == 3 {
                    Err(format!("item {x}"))
                } else {
                    Ok(x)
                }
            },
            |_, _| {
                finished += 1;
                Ok(())
            },
        )
        .unwrap_err();
        assert_eq!(err, "item 3");
        assert!(finished < items.len() - 1, "{finished}");

        let doubled = map(&items, 3, |&x| x * 2);
        assert_eq!(doubled, items.iter().map(|x| x * 2).collect::<Vec<_>>());
    }
}
